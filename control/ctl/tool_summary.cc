#include "control/ctl/tool_summary.h"

#include <algorithm>
#include <array>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

namespace airlock::control::ctl {
namespace {

using nlohmann::json;

constexpr std::array<std::string_view, 8> kShellTools = {"Bash",
                                                         "bash",
                                                         "shell",
                                                         "shell_command",
                                                         "exec_command",
                                                         "local_shell",
                                                         "run_shell_command",
                                                         "container.exec"};

std::optional<std::string> string_member(const json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

// argv as a command line; a shell's "-c" / "-lc" script is the command itself.
std::optional<std::string> argv_command(const json& argv) {
  if (!argv.is_array() || argv.empty()) return std::nullopt;
  std::vector<std::string> words;
  for (const json& word : argv) {
    if (!word.is_string()) return std::nullopt;
    words.push_back(word.get<std::string>());
  }
  if (words.size() == 3 && (words[1] == "-c" || words[1] == "-lc")) {
    const std::string shell = words[0].substr(words[0].rfind('/') + 1);
    if (shell == "bash" || shell == "sh" || shell == "zsh" || shell == "dash") return words[2];
  }
  std::string line;
  for (const std::string& word : words) {
    if (!line.empty()) line += ' ';
    const bool plain =
        !word.empty() && word.find_first_of(" \t\n'\"$`\\|&;<>()*?") == std::string::npos;
    line += plain ? word : "'" + word + "'";
  }
  return line;
}

std::optional<std::string> shell_command(const json& args) {
  if (!args.is_object()) return std::nullopt;
  if (auto command = string_member(args, "command")) return command;
  if (auto cmd = string_member(args, "cmd")) return cmd;
  for (const char* key : {"command", "cmd"}) {
    if (const auto it = args.find(key); it != args.end()) {
      if (auto line = argv_command(*it)) return line;
    }
  }
  if (const auto it = args.find("commands"); it != args.end() && it->is_array()) {
    std::string line;
    for (const json& command : *it) {
      if (!command.is_string()) continue;
      if (!line.empty()) line += "; ";
      line += command.get<std::string>();
    }
    if (!line.empty()) return line;
  }
  return std::nullopt;
}

std::string one_line(std::string_view text, std::size_t max_chars) {
  std::string out;
  for (const char c : text) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      out += ' ';
    } else {
      out += c;
    }
  }
  if (out.size() <= max_chars) return out;
  std::size_t cut = max_chars > 3 ? max_chars - 3 : 0;
  while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xc0) == 0x80) --cut;
  return out.substr(0, cut) + "...";
}

}  // namespace

std::string tool_summary(std::string_view name, std::string_view arguments, std::size_t max_chars) {
  if (std::find(kShellTools.begin(), kShellTools.end(), name) != kShellTools.end()) {
    const json args = json::parse(arguments.begin(), arguments.end(), nullptr, false);
    if (auto command = shell_command(args)) return one_line(*command, max_chars);
  }
  return one_line(arguments, max_chars);
}

}  // namespace airlock::control::ctl

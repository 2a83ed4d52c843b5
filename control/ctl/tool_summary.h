// One line per tool call for `airlockctl tools`: what the agent did, readable at a glance.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace airlock::control::ctl {

// For shell tools the command itself: Claude Code / OpenCode / Gemini CLI
// {"command": "..."}, Codex `shell` {"command": ["bash", "-lc", "<script>"]} (the script; other
// argv joined with spaces), `shell_command` {"command": "..."}, `exec_command` {"cmd": "..."},
// `local_shell` actions {"command": [argv]}, the hosted `shell` {"commands": [...]} joined with
// "; ". Anything else: the arguments as sent. Line breaks become "\n" and tabs spaces so the
// result is one line, cut to `max_chars` bytes (on a UTF-8 boundary) with "..." when longer.
std::string tool_summary(std::string_view name, std::string_view arguments,
                         std::size_t max_chars = 100);

}  // namespace airlock::control::ctl

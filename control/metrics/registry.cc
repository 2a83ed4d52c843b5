#include "control/metrics/registry.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <functional>
#include <limits>
#include <mutex>
#include <set>
#include <stdexcept>
#include <system_error>

namespace airlock::control::metrics {

namespace {

// UTF-8 text never contains the byte 0xff, so joined label values cannot collide.
constexpr char kKeySeparator = '\xff';

void join_key(std::span<const std::string_view> values, std::string& key) {
  key.clear();
  for (std::string_view v : values) {
    key += v;
    key += kKeySeparator;
  }
}

bool valid_name(std::string_view name, bool colon_allowed) {
  auto head = [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (colon_allowed && c == ':');
  };
  auto tail = [&](char c) { return head(c) || (c >= '0' && c <= '9'); };
  return !name.empty() && head(name.front()) && std::all_of(name.begin() + 1, name.end(), tail);
}

void check_label_names(const std::string& metric, const std::vector<std::string>& names,
                       bool histogram) {
  std::set<std::string_view> seen;
  for (const std::string& n : names) {
    if (!valid_name(n, false) || n.starts_with("__") || (histogram && n == "le") ||
        !seen.insert(n).second) {
      throw std::invalid_argument(metric + ": invalid or repeated label name \"" + n + "\"");
    }
  }
}

void check_value_count(const std::string& metric, size_t expected, size_t given) {
  if (given != expected) {
    throw std::invalid_argument(metric + ": " + std::to_string(given) + " label values for " +
                                std::to_string(expected) + " labels");
  }
}

std::vector<std::pair<std::string, std::string>> zip_labels(
    const std::vector<std::string>& names, const std::vector<std::string>& values) {
  std::vector<std::pair<std::string, std::string>> labels;
  labels.reserve(names.size());
  for (size_t i = 0; i < names.size(); ++i) labels.emplace_back(names[i], values[i]);
  return labels;
}

void append_escaped(std::string& out, std::string_view text, bool quotes) {
  for (char c : text) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '"':
        out += quotes ? "\\\"" : "\"";
        break;
      default:
        out += c;
    }
  }
}

std::string_view type_name(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

}  // namespace

std::string format_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[32];
  // Whole counts print in full ("2000000", not the shorter "2e+06") while exact in a double.
  constexpr double kExactIntegers = 9007199254740992.0;  // 2^53
  const std::to_chars_result r =
      value == std::trunc(value) && std::fabs(value) <= kExactIntegers
          ? std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(value))
          : std::to_chars(buf, buf + sizeof buf, value);
  return std::string(buf, r.ptr);
}

std::string format_text(std::vector<MetricFamily> families) {
  std::stable_sort(families.begin(), families.end(),
                   [](const MetricFamily& a, const MetricFamily& b) { return a.name < b.name; });
  std::string out;
  for (const MetricFamily& f : families) {
    if (f.samples.empty()) continue;
    out += "# HELP " + f.name + " ";
    append_escaped(out, f.help, false);
    out += "\n# TYPE " + f.name + " ";
    out += type_name(f.type);
    out += '\n';
    for (const Sample& s : f.samples) {
      out += f.name;
      out += s.suffix;
      if (!s.labels.empty()) {
        out += '{';
        for (size_t i = 0; i < s.labels.size(); ++i) {
          if (i > 0) out += ',';
          out += s.labels[i].first;
          out += "=\"";
          append_escaped(out, s.labels[i].second, true);
          out += '"';
        }
        out += '}';
      }
      out += ' ';
      out += format_value(s.value);
      out += '\n';
    }
  }
  return out;
}

namespace detail {

template <class Series>
template <class... Args>
Series* SeriesMap<Series>::find_or_create(std::span<const std::string_view> values, size_t cap,
                                          Args&&... args) {
  // Kept per thread: every request looks up series that exist, and a key of its user, model and
  // status is past the string's inline capacity, so a fresh key would cost an allocation each.
  thread_local std::string key;
  join_key(values, key);
  Shard& shard = shards_[std::hash<std::string>{}(key) % kShards];
  {
    std::shared_lock lock(shard.mu);
    if (auto it = shard.series.find(key); it != shard.series.end()) return it->second.get();
  }
  std::unique_lock lock(shard.mu);
  if (auto it = shard.series.find(key); it != shard.series.end()) return it->second.get();
  size_t n = count_.load(std::memory_order_relaxed);
  do {
    if (n >= cap) return nullptr;
  } while (!count_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
  return shard.series.emplace(key, std::make_unique<Series>(std::forward<Args>(args)...))
      .first->second.get();
}

template <class Series>
std::vector<std::pair<std::vector<std::string>, const Series*>> SeriesMap<Series>::all() const {
  std::vector<std::pair<std::vector<std::string>, const Series*>> out;
  for (const Shard& shard : shards_) {
    std::shared_lock lock(shard.mu);
    for (const auto& [key, series] : shard.series) {
      std::vector<std::string> values;
      for (size_t start = 0; start < key.size();) {
        const size_t end = key.find(kKeySeparator, start);
        values.emplace_back(key.substr(start, end - start));
        start = end + 1;
      }
      out.emplace_back(std::move(values), series.get());
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

}  // namespace detail

Counter::Counter(detail::RegistryKey, Registry& registry, std::string name, std::string help,
                 std::vector<std::string> label_names, size_t max_series)
    : registry_(registry),
      name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)),
      max_series_(max_series) {
  // An unlabelled counter shows 0 from the first scrape rather than appearing later.
  if (label_names_.empty()) series_.find_or_create({}, max_series_);
}

void Counter::add(std::span<const std::string_view> label_values, double amount) {
  check_value_count(name_, label_names_.size(), label_values.size());
  if (!(amount >= 0)) return;
  detail::CounterSeries* series = series_.find_or_create(label_values, max_series_);
  if (series == nullptr) {
    registry_.count_dropped(name_);
    return;
  }
  series->value.fetch_add(amount, std::memory_order_relaxed);
}

double Counter::value(std::initializer_list<std::string_view> label_values) const {
  check_value_count(name_, label_names_.size(), label_values.size());
  const std::vector<std::string> wanted(label_values.begin(), label_values.end());
  for (const auto& [values, series] : series_.all()) {
    if (values == wanted) return series->value.load(std::memory_order_relaxed);
  }
  return 0;
}

MetricFamily Counter::collect() const {
  MetricFamily f{name_, help_, MetricType::kCounter, {}};
  for (const auto& [values, series] : series_.all()) {
    f.samples.push_back(
        {"", zip_labels(label_names_, values), series->value.load(std::memory_order_relaxed)});
  }
  return f;
}

Histogram::Histogram(detail::RegistryKey, Registry& registry, std::string name, std::string help,
                     std::vector<std::string> label_names, std::vector<double> bounds,
                     size_t max_series)
    : registry_(registry),
      name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)),
      bounds_(std::move(bounds)),
      max_series_(max_series) {
  if (label_names_.empty()) series_.find_or_create({}, max_series_, bounds_.size());
}

void Histogram::observe(std::span<const std::string_view> label_values, double value) {
  check_value_count(name_, label_names_.size(), label_values.size());
  if (std::isnan(value)) return;
  detail::HistogramSeries* series =
      series_.find_or_create(label_values, max_series_, bounds_.size());
  if (series == nullptr) {
    registry_.count_dropped(name_);
    return;
  }
  const auto bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  series->counts[static_cast<size_t>(bucket)].fetch_add(1, std::memory_order_relaxed);
  series->sum.fetch_add(value, std::memory_order_relaxed);
}

MetricFamily Histogram::collect() const {
  MetricFamily f{name_, help_, MetricType::kHistogram, {}};
  for (const auto& [values, series] : series_.all()) {
    const auto labels = zip_labels(label_names_, values);
    // _count is the +Inf bucket, so the two agree even while observations race the scrape.
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= bounds_.size(); ++i) {
      cumulative += series->counts[i].load(std::memory_order_relaxed);
      auto bucket_labels = labels;
      bucket_labels.emplace_back(
          "le", i < bounds_.size() ? format_value(bounds_[i]) : std::string("+Inf"));
      f.samples.push_back({"_bucket", std::move(bucket_labels), static_cast<double>(cumulative)});
    }
    f.samples.push_back({"_sum", labels, series->sum.load(std::memory_order_relaxed)});
    f.samples.push_back({"_count", labels, static_cast<double>(cumulative)});
  }
  return f;
}

Registry::Registry(size_t max_series_per_metric) : max_series_(max_series_per_metric) {
  // Uncapped: it has one label set per declared metric, and a capped one would recurse here.
  dropped_ =
      &declare_counter("airlock_metrics_dropped_series_total",
                       "Updates discarded because their metric already had the maximum number "
                       "of label sets.",
                       {"metric"}, std::numeric_limits<size_t>::max());
}

void Registry::check_new_name(const std::string& name) const {
  if (!valid_name(name, true)) throw std::invalid_argument("invalid metric name \"" + name + "\"");
  if (counters_.contains(name) || histograms_.contains(name)) {
    throw std::invalid_argument("metric \"" + name + "\" is already declared");
  }
}

Counter& Registry::counter(std::string name, std::string help,
                           std::vector<std::string> label_names) {
  return declare_counter(std::move(name), std::move(help), std::move(label_names), max_series_);
}

Counter& Registry::declare_counter(std::string name, std::string help,
                                   std::vector<std::string> label_names, size_t max_series) {
  check_new_name(name);
  check_label_names(name, label_names, false);
  auto c = std::make_unique<Counter>(detail::RegistryKey(), *this, name, std::move(help),
                                     std::move(label_names), max_series);
  return *counters_.emplace(std::move(name), std::move(c)).first->second;
}

Histogram& Registry::histogram(std::string name, std::string help,
                               std::vector<std::string> label_names, std::vector<double> bounds) {
  check_new_name(name);
  check_label_names(name, label_names, true);
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) {
      throw std::invalid_argument(name + ": bucket bounds must be finite and strictly increasing");
    }
  }
  auto h = std::make_unique<Histogram>(detail::RegistryKey(), *this, name, std::move(help),
                                       std::move(label_names), std::move(bounds), max_series_);
  return *histograms_.emplace(std::move(name), std::move(h)).first->second;
}

void Registry::count_dropped(const std::string& metric) {
  dropped_->add({std::string_view(metric)});
}

std::vector<MetricFamily> Registry::collect() const {
  std::vector<MetricFamily> out;
  out.reserve(counters_.size() + histograms_.size());
  for (const auto& [name, c] : counters_) out.push_back(c->collect());
  for (const auto& [name, h] : histograms_) out.push_back(h->collect());
  return out;
}

}  // namespace airlock::control::metrics

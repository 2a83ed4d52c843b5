// Prometheus metrics for the control plane: counters and histograms with label sets, updated
// concurrently by the gateway's I/O threads, rendered in the text exposition format 0.0.4.
//
// Why not Debian's prometheus-cpp (prometheus-cpp-dev 1.0.1): every Family::Add takes the
// family's one mutex, so all I/O threads serialise on each label lookup; it writes series in
// the order of a hash map, not sorted; it has no cap on label sets; and it pulls in
// civetweb and libcurl for servers we do not use. What we need is small: sharded lookups under
// reader locks, one atomic per value, and a sorted writer.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace airlock::control::metrics {

// ---- A scrape's worth of values, and its text form ----

enum class MetricType { kCounter, kGauge, kHistogram };

struct Sample {
  std::string suffix;  // "", "_bucket", "_sum" or "_count"
  std::vector<std::pair<std::string, std::string>> labels;
  double value = 0;
};

struct MetricFamily {
  std::string name;
  std::string help;
  MetricType type = MetricType::kCounter;
  std::vector<Sample> samples;  // written in this order
};

// Text exposition format 0.0.4. Families are written sorted by name (stable output whatever
// the order they were collected in); families without samples are left out.
std::string format_text(std::vector<MetricFamily> families);

// Shortest text that reads back as the same double; "+Inf", "-Inf", "NaN".
std::string format_value(double value);

// ---- Live metrics ----

class Registry;

namespace detail {

// Lets only Registry construct metrics, while the constructors stay public for make_unique.
class RegistryKey {
  friend class metrics::Registry;
  RegistryKey() = default;
};

// One labelled family: its series live in shards, each a map under a reader-writer lock, so
// concurrent updates of existing series only share a reader lock on one shard.
template <class Series>
class SeriesMap {
 public:
  // The series for `values`, created on first use; nullptr when creating it would exceed the cap.
  template <class... Args>
  Series* find_or_create(std::span<const std::string_view> values, size_t cap, Args&&... args);
  // Every series with its label values, in no particular order.
  std::vector<std::pair<std::vector<std::string>, const Series*>> all() const;

 private:
  static constexpr size_t kShards = 16;
  struct Shard {
    mutable std::shared_mutex mu;
    std::unordered_map<std::string, std::unique_ptr<Series>> series;
  };
  std::array<Shard, kShards> shards_;
  std::atomic<size_t> count_{0};
};

struct CounterSeries {
  std::atomic<double> value{0};
};

struct HistogramSeries {
  explicit HistogramSeries(size_t buckets) : counts(buckets + 1) {}
  std::vector<std::atomic<uint64_t>> counts;  // per bucket, not cumulative; last is +Inf
  std::atomic<double> sum{0};
};

}  // namespace detail

class Counter {
 public:
  Counter(detail::RegistryKey, Registry& registry, std::string name, std::string help,
          std::vector<std::string> label_names, size_t max_series);

  // Adds `amount` to the series with `label_values` (one per label name, in declared order).
  // A negative or NaN amount is ignored: a counter never goes down.
  void add(std::span<const std::string_view> label_values, double amount = 1);
  void add(std::initializer_list<std::string_view> label_values, double amount = 1) {
    add(std::span(label_values.begin(), label_values.size()), amount);
  }
  // The current value; 0 for a series that does not exist.
  double value(std::initializer_list<std::string_view> label_values) const;

 private:
  friend class Registry;
  MetricFamily collect() const;

  Registry& registry_;
  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
  size_t max_series_;
  detail::SeriesMap<detail::CounterSeries> series_;
};

class Histogram {
 public:
  Histogram(detail::RegistryKey, Registry& registry, std::string name, std::string help,
            std::vector<std::string> label_names, std::vector<double> bounds, size_t max_series);

  // Counts `value` in the first bucket whose upper bound is >= value (bounds are inclusive).
  void observe(std::span<const std::string_view> label_values, double value);
  void observe(std::initializer_list<std::string_view> label_values, double value) {
    observe(std::span(label_values.begin(), label_values.size()), value);
  }

 private:
  friend class Registry;
  MetricFamily collect() const;

  Registry& registry_;
  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
  std::vector<double> bounds_;
  size_t max_series_;
  detail::SeriesMap<detail::HistogramSeries> series_;
};

class Registry {
 public:
  static constexpr size_t kDefaultMaxSeries = 10000;

  // Each metric holds at most `max_series_per_metric` label sets; an update that would create
  // one more is dropped and counted in airlock_metrics_dropped_series_total{metric}.
  explicit Registry(size_t max_series_per_metric = kDefaultMaxSeries);
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Declare every metric at startup, before any thread updates or renders: declaring is not
  // thread-safe. Throws
  // std::invalid_argument for an invalid or already declared name, an invalid or reserved label
  // name, or (histograms) bounds that are not strictly increasing and finite. The returned
  // references live as long as the registry.
  Counter& counter(std::string name, std::string help, std::vector<std::string> label_names);
  Histogram& histogram(std::string name, std::string help, std::vector<std::string> label_names,
                       std::vector<double> bounds);

  // Every family's current values. Safe to call while other threads update.
  std::vector<MetricFamily> collect() const;
  // collect() in the text format.
  std::string render() const { return format_text(collect()); }

 private:
  friend class Counter;
  friend class Histogram;
  Counter& declare_counter(std::string name, std::string help, std::vector<std::string> label_names,
                           size_t max_series);
  void count_dropped(const std::string& metric);
  void check_new_name(const std::string& name) const;

  size_t max_series_;
  std::map<std::string, std::unique_ptr<Counter>> counters_;
  std::map<std::string, std::unique_ptr<Histogram>> histograms_;
  Counter* dropped_;
};

}  // namespace airlock::control::metrics

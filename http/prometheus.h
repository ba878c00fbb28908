// Writing the Prometheus text format (0.0.4), shared by both daemons' /metrics: label escaping,
// numbers, HELP/TYPE headers, samples and histograms.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace loom::http::prometheus {

// A label value with backslash, double quote and newline escaped, as the text format requires.
std::string escape(std::string_view v);

// The shortest text that reads back as v; +Inf, -Inf, NaN as the format spells them.
std::string number(double v);

void header(std::string& out, std::string_view name, std::string_view type, std::string_view help);

// name{labels} v; `labels` already rendered (k="v",...), empty for none.
void sample(std::string& out, std::string_view name, std::string_view labels, double v);

// Counts per bucket; not thread-safe (the owner's lock guards it).
class Histogram {
public:
    explicit Histogram(std::vector<double> bounds);  // upper bounds, ascending (+Inf is implied)
    void observe(double v);
    uint64_t count() const { return count_; }
    // name_bucket{labels,le=...} (cumulative), name_sum and name_count; no header.
    void render(std::string& out, std::string_view name, std::string_view labels) const;

private:
    std::vector<double> bounds_;
    std::vector<uint64_t> counts_;  // per bucket (not cumulative); one more than bounds for +Inf
    double sum_ = 0;
    uint64_t count_ = 0;
};

}  // namespace loom::http::prometheus

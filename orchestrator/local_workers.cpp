// Which placement device a worker not started here is on: loopback hosts, GPU UUIDs, CPU stand-ins.
#include "orchestrator/local_workers.h"

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <cctype>

namespace loom::orchestrator {

bool is_loopback_host(std::string_view host) {
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    std::string lower(host);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (lower == "localhost") return true;
    boost::system::error_code ec;
    const auto address = boost::asio::ip::make_address(lower, ec);
    if (ec) return false;
    if (address.is_v4()) return (address.to_v4().to_uint() >> 24) == 127;
    const auto v6 = address.to_v6();
    if (v6.is_v4_mapped())
        return (boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6).to_uint() >> 24) == 127;
    return v6.is_loopback();
}

bool names_gpu_by_uuid(const std::string& gpu) {
    return !gpu.empty() && !std::all_of(gpu.begin(), gpu.end(), [](unsigned char c) { return std::isdigit(c); });
}

std::string local_device(const WorkerStatus& w, const std::vector<DeviceIdentity>& devices) {
    if (!is_loopback_host(parse_worker_url(w.url).host)) return "";
    if (w.backend == "cuda") {
        if (w.device_uuid.empty()) return "";
        const auto it = std::find_if(devices.begin(), devices.end(),
                                     [&](const DeviceIdentity& d) { return !d.cpu && d.uuid == w.device_uuid; });
        return it != devices.end() ? it->id : "";
    }
    if (w.backend != "cpu") return "";
    const auto cpu = [](const DeviceIdentity& d) { return d.cpu; };
    if (std::count_if(devices.begin(), devices.end(), cpu) != 1) return "";
    return std::find_if(devices.begin(), devices.end(), cpu)->id;
}

std::vector<Resident> local_residents(const std::vector<WorkerStatus>& workers,
                                      const std::vector<DeviceIdentity>& devices) {
    std::vector<Resident> out;
    for (const WorkerStatus& w : workers) {
        if (w.origin == "spawned" || w.state == WorkerState::unhealthy) continue;  // spawned: counted as such
        const uint64_t bytes = reported_bytes(w);
        if (bytes == 0) continue;
        if (std::string device = local_device(w, devices); !device.empty())
            out.push_back({w.id, std::move(device), bytes});
    }
    return out;
}

}  // namespace loom::orchestrator

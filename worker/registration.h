// Self-registration with a loom-orchestrator: the worker announces the URL it serves on and then
// heartbeats every second, from its own thread; while the orchestrator is away it retries with
// backoff and keeps serving.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

namespace loom::worker {

struct RegistrationOptions {
    std::string orchestrator_url;  // --register: http://HOST:PORT
    std::string secret;            // --register-secret
    std::string advertise_url;     // --advertise-url; "" = http://LISTEN_HOST:PORT
};

// Registration flags that cannot work; what() names the flag.
class BadRegistration : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

// Checks the flags before the port is opened: the orchestrator's URL, a secret, and an address the
// orchestrator can reach (a wildcard listen address such as 0.0.0.0 needs --advertise-url).
void check_registration(const RegistrationOptions& o, const std::string& listen_host);

// The URL announced: --advertise-url, else http://LISTEN_HOST:PORT.
std::string advertised_url(const RegistrationOptions& o, const std::string& listen_host, uint16_t port);

class Registration {
public:
    static constexpr std::chrono::milliseconds kHeartbeat{1000};
    static constexpr std::chrono::milliseconds kMaxBackoff{8000};  // the longest pause after failures
    static constexpr std::chrono::milliseconds kCallTimeout{2000};

    // Starts heartbeating `url` to the orchestrator at once.
    Registration(const RegistrationOptions& o, std::string url);
    ~Registration();  // stop()
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;

    // Stops heartbeating (the orchestrator forgets the worker once its heartbeats are missed).
    void stop();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace loom::worker

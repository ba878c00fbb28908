// The loom-mux/1 framing: many requests and their responses over one upgraded connection, so an
// orchestrator holds a few descriptors per worker instead of one per stream (docs/API.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "http/http_server.h"

namespace loom::http {

// The Upgrade token of the protocol, and the path loom's daemons take it on.
inline constexpr std::string_view kMuxProtocol = "loom-mux/1";
inline constexpr std::string_view kMuxPath = "/mux";

// A frame: a 9-byte head (payload length, big-endian u32; type, u8; stream id, big-endian u32), then
// the payload.
enum class MuxType : uint8_t {
    open = 1,    // client: a request (payload: u32 head length, head JSON {method, target, headers}, body)
    cancel = 2,  // client: the request is no longer wanted (empty)
    head = 3,    // server: the response's head (payload: JSON {status, headers})
    data = 4,    // server: body bytes (a stream's SSE events as they are produced)
    end = 5,     // server: the response is complete (empty)
};
inline constexpr size_t kMuxHeadBytes = 9;

struct MuxFrame {
    MuxType type;
    uint32_t id;
    std::string_view payload;  // into the buffer it was read from
};

// A frame that breaks the protocol (unknown type, payload over the limit, malformed request head):
// the connection cannot go on.
struct MuxProtocolError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

void append_frame(std::string& out, MuxType type, uint32_t id, std::string_view payload = {});

// The next whole frame at the front of `buffer`, which it then excludes; nullopt while the frame is
// still incomplete. Throws MuxProtocolError for a bad type or a payload longer than `max_payload`.
std::optional<MuxFrame> next_frame(std::string_view& buffer, size_t max_payload);

// An open frame's payload for a request, and the request from one (path and query apart, header
// names in lower case; `peer` is the connection's). Throws MuxProtocolError when malformed.
std::string encode_open(std::string_view method, std::string_view target, const HttpHeaders& headers,
                        std::string_view body);
HttpRequest decode_open(std::string_view payload, std::string peer);

// A head frame's payload for a response (content type first among the headers, names in lower case),
// and the status and headers from one.
std::string encode_head(int status, const std::string& content_type, const HttpHeaders& headers);
std::pair<int, HttpHeaders> decode_head(std::string_view payload);

}  // namespace loom::http

// libFuzzer target: any bytes, taken as what one side of a loom-mux/1 connection sends, are cut into
// frames and each frame's payload decoded as an open frame (what a server reads) and as a head frame
// (what a client reads), as http/mux_frame.h does on the wire. Nothing may crash; anything that is
// not the protocol is a MuxProtocolError; a decoded request encodes back to the same request.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "http/mux_frame.h"

using namespace loom::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view rest(reinterpret_cast<const char*>(data), size);
    const HttpLimits limits;
    try {
        while (const auto f = next_frame(rest, limits.body_bytes + limits.header_bytes)) {
            try {
                const HttpRequest r = decode_open(f->payload, "fuzz");
                const std::string target = r.query.empty() ? r.path : r.path + "?" + r.query;
                const HttpRequest again = decode_open(encode_open(r.method, target, r.headers, r.body), "fuzz");
                if (again.method != r.method || again.path != r.path || again.query != r.query ||
                    again.headers != r.headers || again.body != r.body)
                    std::abort();
            } catch (const MuxProtocolError&) {}
            try {
                decode_head(f->payload);
            } catch (const MuxProtocolError&) {}
        }
    } catch (const MuxProtocolError&) {}
    return 0;
}

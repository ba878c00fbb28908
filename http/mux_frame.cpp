// loom-mux/1 frames: the 9-byte head, the open frame's request and the head frame's response.
#include "http/mux_frame.h"

#include <cctype>
#include <nlohmann/json.hpp>

namespace loom::http {

namespace {

void put_u32(std::string& out, uint32_t v) {
    const char bytes[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
                           static_cast<char>(v)};
    out.append(bytes, 4);
}

uint32_t get_u32(std::string_view s) {
    const auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(s[i])); };
    return b(0) << 24 | b(1) << 16 | b(2) << 8 | b(3);
}

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// [[name, value], ...] as headers; anything else is a protocol error.
HttpHeaders headers_of(const nlohmann::json& j) {
    if (!j.is_array()) throw MuxProtocolError("headers must be an array of [name, value]");
    HttpHeaders out;
    for (const auto& pair : j) {
        if (!pair.is_array() || pair.size() != 2 || !pair[0].is_string() || !pair[1].is_string())
            throw MuxProtocolError("a header must be [name, value] strings");
        out.emplace_back(lower(pair[0].get<std::string>()), pair[1].get<std::string>());
    }
    return out;
}

nlohmann::json json_of(const HttpHeaders& headers) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& [k, v] : headers) j.push_back({lower(k), v});
    return j;
}

}  // namespace

void append_frame(std::string& out, MuxType type, uint32_t id, std::string_view payload) {
    put_u32(out, static_cast<uint32_t>(payload.size()));
    out.push_back(static_cast<char>(type));
    put_u32(out, id);
    out.append(payload);
}

std::optional<MuxFrame> next_frame(std::string_view& buffer, size_t max_payload) {
    if (buffer.size() < kMuxHeadBytes) return std::nullopt;
    const uint32_t length = get_u32(buffer);
    const auto type = static_cast<uint8_t>(buffer[4]);
    if (type < 1 || type > 5) throw MuxProtocolError("unknown frame type " + std::to_string(type));
    if (length > max_payload)
        throw MuxProtocolError("a frame of " + std::to_string(length) + " bytes is over the limit of " +
                               std::to_string(max_payload));
    if (buffer.size() < kMuxHeadBytes + length) return std::nullopt;
    MuxFrame f{static_cast<MuxType>(type), get_u32(buffer.substr(5)), buffer.substr(kMuxHeadBytes, length)};
    buffer.remove_prefix(kMuxHeadBytes + length);
    return f;
}

std::string encode_open(std::string_view method, std::string_view target, const HttpHeaders& headers,
                        std::string_view body) {
    const std::string head =
        nlohmann::json{{"method", method}, {"target", target}, {"headers", json_of(headers)}}.dump();
    std::string out;
    out.reserve(4 + head.size() + body.size());
    put_u32(out, static_cast<uint32_t>(head.size()));
    out += head;
    out.append(body);
    return out;
}

HttpRequest decode_open(std::string_view payload, std::string peer) {
    if (payload.size() < 4) throw MuxProtocolError("an open frame shorter than its head length");
    const uint32_t head_length = get_u32(payload);
    if (head_length > payload.size() - 4) throw MuxProtocolError("an open frame's head runs past its end");
    const auto j = nlohmann::json::parse(payload.substr(4, head_length), nullptr, false);
    if (!j.is_object() || !j.contains("method") || !j["method"].is_string() || !j.contains("target") ||
        !j["target"].is_string() || !j.contains("headers"))
        throw MuxProtocolError("an open frame's head must be {method, target, headers}");
    HttpRequest r;
    r.method = j["method"].get<std::string>();
    const auto target = j["target"].get<std::string>();
    if (target.empty() || target.front() != '/') throw MuxProtocolError("an open frame's target must start with /");
    const size_t q = target.find('?');
    r.path = target.substr(0, q);
    if (q != std::string::npos) r.query = target.substr(q + 1);
    r.headers = headers_of(j["headers"]);
    r.body = std::string(payload.substr(4 + head_length));
    r.peer = std::move(peer);
    return r;
}

std::string encode_head(int status, const std::string& content_type, const HttpHeaders& headers) {
    nlohmann::json h = json_of(headers);
    h.insert(h.begin(), nlohmann::json::array({"content-type", content_type}));
    return nlohmann::json{{"status", status}, {"headers", std::move(h)}}.dump(-1, ' ', false,
                                                                              nlohmann::json::error_handler_t::replace);
}

std::pair<int, HttpHeaders> decode_head(std::string_view payload) {
    const auto j = nlohmann::json::parse(payload, nullptr, false);
    if (!j.is_object() || !j.contains("status") || !j["status"].is_number_integer() || !j.contains("headers"))
        throw MuxProtocolError("a head frame must be {status, headers}");
    const int status = j["status"].get<int>();
    if (status < 100 || status > 599) throw MuxProtocolError("a head frame's status is out of range");
    return {status, headers_of(j["headers"])};
}

}  // namespace loom::http

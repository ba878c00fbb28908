// The server's side of a loom-mux/1 connection (private to http/): requests arrive as open frames,
// go through the same routes as HTTP/1.1 requests, and their responses leave as frames.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <string>

#include "http/server_connection.h"

namespace loom::http {

// Takes over a connection whose upgrade request was accepted: sends `switching` (the 101 response),
// then serves frames until the client leaves. `leftover`: bytes the client sent after its upgrade
// request.
void start_mux_session(boost::asio::ip::tcp::socket socket, std::string switching, std::string leftover,
                       ServerContext& server, std::string peer);

}  // namespace loom::http

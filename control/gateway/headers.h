// Which headers cross the gateway, in each direction.
//
// Upstream, the client's credentials never go through (the sandbox holds no real key; whatever
// it sends is dropped and the provider key is set instead), except for a provider configured as
// passthrough. Hop-by-hop headers belong to the client's connection, not the provider's. Host
// and Content-Length are recomputed for the upstream request. Accept-Encoding is dropped so the
// provider answers uncompressed: the gateway must read the SSE events and usage of the response
// it relays, and decompressing a copy of every stream would cost more than the loopback or
// sandbox link saves. Content-Encoding is dropped because the gateway forwards the body it
// decoded. Everything else, including anthropic-version and every anthropic-beta line, goes
// through byte for byte and in order.
#pragma once

#include <optional>
#include <string_view>

#include <boost/beast/http/fields.hpp>

#include "control/http/server.h"
#include "policy/document.h"

namespace airlock::control::gateway {

// The header of the request sent to `provider`, built from the client's. `key` is the
// provider's central key (nullopt: the provider takes no key).
boost::beast::http::fields upstream_request_fields(const boost::beast::http::fields& client,
                                                   const policy::ProviderSpec& provider,
                                                   std::optional<std::string_view> key);

// Rewrites the provider's response header for the client: hop-by-hop headers dropped (the
// server frames the body itself), and Content-Length dropped when `body_may_change` (the
// relay may remove an injected usage chunk, so the body is re-chunked).
void prepare_client_header(http::ResponseHeader& header, bool body_may_change);

}  // namespace airlock::control::gateway

// What a finished request tells the outside world: the events its record raises (request
// completed, each tool call, access denied, each guardrail match), built from the record alone so
// every way a request can end reports the same way.
#pragma once

#include "control/events/outbox.h"
#include "control/store/store.h"

namespace airlock::control::gateway {

void publish_record_events(events::Outbox& outbox, const RequestRecord& record);

}  // namespace airlock::control::gateway

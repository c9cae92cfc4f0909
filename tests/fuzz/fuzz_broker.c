//  fuzz_broker — libFuzzer target for the broker's protocol logic.
//
//  One input is a whole conversation: several peers greeting, joining,
//  saying, flushing and expiring, in the record format of
//  zchat_testbed_fuzz (broker/zchat_testbed.h). The server runs without
//  sockets over a real SQLite store, so the fuzzer reaches every command
//  handler, the group commit and session expiry. The testbed aborts if the
//  broker ever emits a body that does not decode or that a broker may not
//  send, which libFuzzer reports as a crash; ASan and UBSan catch the rest.

#include "zchat_testbed.h"

int
    LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    return zchat_testbed_fuzz (data, size);
}

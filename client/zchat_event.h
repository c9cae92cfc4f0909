//  zchat_event — the events libzchat hands its caller, and where they are
//  made. The type, zchat_event_destroy and zchat_event_type_name are public
//  (zchat_client.h); making events is libzchat's own.

#ifndef ZCHAT_EVENT_H_INCLUDED
#define ZCHAT_EVENT_H_INCLUDED

#include "zchat_client.h"

//  Hidden from libzchat.so's exports: callers only ever destroy events.
#pragma GCC visibility push(hidden)

//  A new, zeroed event of type. Returns NULL only if out of memory.
zchat_event_t *
    zchat_event_new (zchat_event_type_t type);

//  A new, zeroed event of type with a NUL-terminated copy of text (text
//  NULL: no text), in the same allocation as the event, so that
//  zchat_event_destroy frees both. Returns NULL only if out of memory.
zchat_event_t *
    zchat_event_new_text (zchat_event_type_t type, const char *text,
                          size_t text_size);

//  Self test; asserts on failure.
void
    zchat_event_test (bool verbose);

#pragma GCC visibility pop

#endif

"""Test whether libzchat.so exports exactly its public API: every function
declared in the two installed headers (client/zchat_client.h,
proto/zchat_msg.h) is a defined dynamic symbol of $BUILD/libzchat.so, and
the library defines no other dynamic symbol, so that the internal modules
(idmap, outbox, sequencer, msgpool, the client's room code) neither clash
with a program's own names nor become an accidental ABI.

The declared names are read from the headers themselves, so a function
added to a public header and forgotten in client/libzchat.map fails here,
and so does an internal one caught by one of the map's patterns."""

import os
import re
import shutil

from harness import BUILD, ROOT, Skip, check, run, T

COST = 1

#  The headers `make install` installs (see its install target).
PUBLIC_HEADERS = ("client/zchat_client.h", "proto/zchat_msg.h")


def _declared_functions(path):
    """Names of the functions a header declares: after comments and
    preprocessor lines are gone, every zchat_ name followed by "(" is a
    prototype (the headers have no function-like macros or calls)."""
    with open(os.path.join(ROOT, path)) as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r"^[ \t]*#[^\n]*", " ", text, flags=re.M)
    return set(re.findall(r"\b(zchat_\w+)\s*\(", text))


def _exported_symbols(library):
    """{name: nm type letter} of the symbols library defines for the
    dynamic linker."""
    r = run(["nm", "-D", "--defined-only", library], timeout=T(30), name="nm")
    check(r.rc == 0, "nm -D failed: %r" % r)
    symbols = {}
    for line in r.out.splitlines():
        fields = line.split()
        if len(fields) >= 2:
            #  "ADDRESS TYPE NAME", or "TYPE NAME" for a symbol without one;
            #  a versioned name ends in @VERSION or @@VERSION.
            symbols[fields[-1].split("@")[0]] = fields[-2]
    return symbols


def test_exports_are_the_public_headers():
    library = os.path.join(BUILD, "libzchat.so")
    check(os.path.exists(library), "%s is not built" % library)
    if not shutil.which("nm"):
        raise Skip("nm (binutils) is not installed")

    declared = set()
    for header in PUBLIC_HEADERS:
        names = _declared_functions(header)
        check(names, "found no prototype in %s: the pattern is out of date" % header)
        declared |= names
    #  A sanity check of the parse: one name from each header, of each layout.
    for name in ("zchat_client_new", "zchat_client_join", "zchat_msg_decode",
                 "zchat_encode_hello", "zchat_encode_page_set_more"):
        check(name in declared, "the header parse missed %s" % name)

    exported = _exported_symbols(library)
    internal = sorted(n for n in exported if n not in declared)
    check(not internal,
          "libzchat.so exports %d symbol(s) no public header declares "
          "(hide them in client/libzchat.map): %s"
          % (len(internal), " ".join(internal)))
    missing = sorted(declared - set(exported))
    check(not missing,
          "libzchat.so does not export %d function(s) its public headers declare "
          "(add them to client/libzchat.map): %s" % (len(missing), " ".join(missing)))
    not_code = sorted("%s (%s)" % (n, t) for n, t in exported.items() if t not in "TWi")
    check(not not_code, "exported symbols that are not functions: %s" % " ".join(not_code))

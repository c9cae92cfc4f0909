"""Test whether `make install PREFIX=DIR` installs a usable library: a small
C program compiled and linked with `pkg-config --cflags --libs libzchat`
(PKG_CONFIG_PATH=DIR/lib/pkgconfig) connects to a broker through
zchat_client_new and gets its message acknowledged. The same program
linked against the installed libzchat.a works too, although it defines a
function named like one of libzchat's internal modules: the installed
archive keeps only the public headers' names global, as libzchat.so does."""

import os
import shutil
import tempfile

import re

from harness import (BUILD, ROOT, SANITIZE, TMP, Broker, check, listener, run, T)

COST = 15
TIMEOUT = 300

PROGRAM = r"""
#include <zchat_client.h>
#include <stdio.h>
#include <string.h>

#ifdef CLASH
//  A name of libzchat's internal outbox module, which the installed
//  archive must not define globally
void zchat_outbox_new (void);
void zchat_outbox_new (void) {}
#endif

int main (int argc, char **argv)
{
    if (argc < 2)
        return 2;
    if (zchat_client_new (argv [1], "9 not a nick") != NULL) {
        fprintf (stderr, "an invalid nick was accepted\n");
        return 1;
    }
    zchat_client_t *client = zchat_client_new (argv [1], "installed");
    if (!client || zchat_client_connect (client, 5000) != 0) {
        fprintf (stderr, "connect: %s\n", client ? zchat_client_error (client) : "new failed");
        zchat_client_destroy (&client);
        return 1;
    }
    int rc = 1;
    uint64_t id = zchat_client_join (client, "install");
    zchat_event_t *event = id ? zchat_client_wait (client, id, 5000) : NULL;
    if (event && event->type == ZCHAT_EV_JOINED) {
        zchat_event_destroy (&event);
        const char *text = "hello from an installed libzchat";
        id = zchat_client_say (client, "install", text, strlen (text), false);
        event = id ? zchat_client_wait (client, id, 5000) : NULL;
        if (event && event->type == ZCHAT_EV_ACK) {
            printf ("acked seq %llu\n", (unsigned long long) event->seq);
            rc = 0;
        }
    }
    if (rc)
        fprintf (stderr, "failed: %s\n", zchat_client_error (client));
    zchat_event_destroy (&event);
    zchat_client_destroy (&client);
    return rc;
}
"""


def _env():
    env = dict(os.environ)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        env.pop(k, None)
    return env


def test_make_install_and_link():
    prefix = tempfile.mkdtemp(prefix="prefix-", dir=TMP)
    build_rel = os.path.relpath(BUILD, ROOT)
    r = run(["make", "-C", ROOT, "--no-print-directory", "install", "PREFIX=" + prefix,
             "BUILD=" + build_rel, "SANITIZE=" + ("1" if SANITIZE else "")],
            timeout=T(240), name="make-install", env=_env())
    check(r.rc == 0, "make install failed: %r" % r)
    for path in ("bin/zchat", "bin/zchat-broker", "include/zchat_client.h",
                 "lib/pkgconfig/libzchat.pc"):
        check(os.path.exists(os.path.join(prefix, path)), "make install did not install %s" % path)
    check(os.path.exists(os.path.join(prefix, "lib", "libzchat.a"))
          or os.path.exists(os.path.join(prefix, "lib", "libzchat.so")),
          "make install installed no libzchat")
    tests_installed = [n for n in os.listdir(os.path.join(prefix, "bin"))
                       if n.startswith("zchat-replay") or n == "zchat-selftest"]
    check(not tests_installed, "make install installed test programs: %s" % tests_installed)
    check("LD_LIBRARY_PATH" in r.out, "make install did not say how the library is found "
          "outside the loader's directories: %r" % r.out[-500:])

    env = _env()
    env["PKG_CONFIG_PATH"] = os.path.join(prefix, "lib", "pkgconfig")
    r = run(["pkg-config", "--cflags", "--libs", "libzchat"], timeout=T(10), env=env,
            name="pkg-config")
    check(r.rc == 0 and "-lzchat" in r.out, "pkg-config libzchat failed: %r" % r)
    flags = r.out.split()
    src = os.path.join(TMP, "prog.c")
    with open(src, "w") as f:
        f.write(PROGRAM)
    exe = os.path.join(TMP, "prog")
    cc = shutil.which("cc") or "gcc"
    san = ["-fsanitize=address,undefined"] if SANITIZE else []
    r = run([cc, "-std=c11", "-Wall", "-Werror"] + san + [src, "-o", exe] + flags,
            timeout=T(60), env=env, name="cc")
    check(r.rc == 0, "compiling against the installed libzchat failed: %r" % r)

    b = Broker()
    ear = listener(b, "ear", ["install"])
    env["LD_LIBRARY_PATH"] = os.path.join(prefix, "lib")
    r = run([exe, b.router], timeout=T(30), env=env, name="prog")
    check(r.rc == 0 and "acked seq 1" in r.out, "the installed-library program failed: %r" % r)
    m = ear.wait_text("hello from an installed libzchat")
    check(m.get("from") == "installed", "message from the program: %r" % m)

    #  The installed archive: only public names global, and a program that
    #  uses an internal module's name links against it and works.
    archive = os.path.join(prefix, "lib", "libzchat.a")
    check(os.path.exists(archive), "make install did not install lib/libzchat.a")
    if shutil.which("nm"):
        r = run(["nm", "--defined-only", "--extern-only", archive], timeout=T(30), name="nm")
        check(r.rc == 0, "nm failed: %r" % r)
        names = set(line.split()[-1] for line in r.out.splitlines()
                    if len(line.split()) == 3)
        check("zchat_client_new" in names and "zchat_msg_decode" in names,
              "the installed libzchat.a lacks public functions: %s" % sorted(names)[:10])
        internal = sorted(n for n in names
                          if re.match(r"zchat_(outbox|idmap|sequencer|msgpool|client_room)_|zchat_event_new", n))
        check(not internal, "the installed libzchat.a exports internal names: %s"
              % " ".join(internal))
    static_exe = os.path.join(TMP, "prog-static")
    static_flags = [archive if f == "-lzchat" else f for f in flags]
    r = run([cc, "-std=c11", "-Wall", "-Werror", "-DCLASH"] + san
            + [src, "-o", static_exe] + static_flags + ["-lpthread"],
            timeout=T(60), env=env, name="cc-static")
    check(r.rc == 0, "linking against the installed libzchat.a failed: %r" % r)
    r = run([static_exe, b.router], timeout=T(30), env=env, name="prog-static")
    check(r.rc == 0 and "acked seq 2" in r.out,
          "the program on the installed libzchat.a failed: %r" % r)

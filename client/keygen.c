//  zchat-keygen — make a CURVE keypair as czmq certificate files.
//
//  zchat-keygen [--name NAME] [--force] PATH
//
//  Writes PATH (the public certificate: give it to the broker's operator,
//  or, for the broker's own pair, to every user) and PATH_secret (the
//  secret certificate, mode 0600: it never leaves this machine). Prints
//  the public key in Z85 on stdout. Refuses to overwrite either file
//  unless --force. Exit 0 on success, 1 on failure, 2 on a usage error.

#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE      2
//  czmq builds "PATH_secret" in a 256-byte buffer: longer paths would be
//  cut short silently.
#define MAX_PATH_SIZE   (255 - 7)
#define MAX_NAME_SIZE   255

static const char *s_usage =
"Usage: zchat-keygen [--name NAME] [--force] PATH\n"
"Make a CURVE keypair for zchat as czmq certificate files:\n"
"  PATH          the public certificate (share it)\n"
"  PATH_secret   the secret certificate, mode 0600 (keep it private)\n"
"and print the public key (Z85) on stdout.\n"
"\n"
"  --name NAME   record NAME in the certificates' metadata (e.g. who owns it)\n"
"  --force       overwrite existing files (default: refuse)\n"
"  -h, --help    this help\n"
"\n"
"A user passes PATH_secret to `zchat --cert`; the broker's operator puts the\n"
"users' public certificates in the directory given to `zchat-broker --allow`.\n"
"For the broker itself: `zchat-broker --cert PATH_secret`, and users pin its\n"
"public key with `zchat --server-key PATH`.\n"
"Exit 0 on success, 1 on failure, 2 on a usage error.\n";

static const struct option s_options [] = {
    { "name",   required_argument, NULL, 'n' },
    { "force",  no_argument,       NULL, 'f' },
    { "help",   no_argument,       NULL, 'h' },
    { NULL, 0, NULL, 0 }
};

//  ---------------------------------------------------------------------
//  Print one usage error line and the hint; returns the usage exit code.

static int
s_usage_error (const char *format, ...) __attribute__ ((format (printf, 1, 2)));

static int
s_usage_error (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    fprintf (stderr, "zchat-keygen: ");
    vfprintf (stderr, format, args);
    fprintf (stderr, "\nTry 'zchat-keygen --help' for more information.\n");
    va_end (args);
    return EXIT_USAGE;
}

//  ---------------------------------------------------------------------
//  A name is stored as a quoted ZPL value: no control characters and no
//  double quote, which would end the value early.

static bool
s_name_valid (const char *name)
{
    size_t size = strlen (name);
    if (size == 0 || size > MAX_NAME_SIZE)
        return false;
    for (size_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char) name [i];
        if (c < 0x20 || c == 0x7F || c == '"')
            return false;
    }
    return true;
}

//  ---------------------------------------------------------------------
//  True if something (even a dangling link) is at path.

static bool
s_exists (const char *path)
{
    struct stat status;
    return lstat (path, &status) == 0;
}

int
main (int argc, char **argv)
{
    const char *name = NULL;
    bool force = false;
    int exit_code = EXIT_USAGE;
    char *secret_path = NULL;
    zcert_t *cert = NULL;

    opterr = 0;
    int option;
    while ((option = getopt_long (argc, argv, ":fh", s_options, NULL)) != -1) {
        switch (option) {
            case 'n':
                name = optarg;
                break;
            case 'f':
                force = true;
                break;
            case 'h':
                fputs (s_usage, stdout);
                exit_code = 0;
                goto done;
            case ':':
                exit_code = s_usage_error ("option '%s' needs a value", argv [optind - 1]);
                goto done;
            default:
                exit_code = s_usage_error ("unknown option '%s'", argv [optind - 1]);
                goto done;
        }
    }
    if (optind != argc - 1) {
        exit_code = s_usage_error (optind == argc? "missing PATH": "too many arguments");
        goto done;
    }
    const char *path = argv [optind];
    if (!*path || strlen (path) > MAX_PATH_SIZE) {
        exit_code = s_usage_error ("PATH must be 1..%d bytes long", MAX_PATH_SIZE);
        goto done;
    }
    if (name && !s_name_valid (name)) {
        exit_code = s_usage_error ("--name must be 1..%d printable characters "
                                   "without '\"'", MAX_NAME_SIZE);
        goto done;
    }

    exit_code = EXIT_FAILURE;
    secret_path = zsys_sprintf ("%s_secret", path);
    assert (secret_path);
    const char *existing = s_exists (path)? path:
                           s_exists (secret_path)? secret_path: NULL;
    if (existing && !force) {
        fprintf (stderr, "zchat-keygen: %s already exists (use --force to "
                 "overwrite)\n", existing);
        goto done;
    }
    //  Remove old files rather than write over them: a rewritten file
    //  keeps its old mode, and an old secret may have been readable.
    if (force
    && ((unlink (path) != 0 && errno != ENOENT)
    ||  (unlink (secret_path) != 0 && errno != ENOENT))) {
        fprintf (stderr, "zchat-keygen: cannot replace %s: %s\n", path, strerror (errno));
        goto done;
    }
    cert = zcert_new ();
    if (!cert) {
        fprintf (stderr, "zchat-keygen: cannot make a keypair\n");
        goto done;
    }
    if (name)
        zcert_set_meta (cert, "name", "%s", name);
    zcert_set_meta (cert, "created-by", "zchat-keygen");
    char date [32];
    time_t now = time (NULL);
    struct tm utc;
    if (gmtime_r (&now, &utc) && strftime (date, sizeof (date), "%Y-%m-%dT%H:%M:%SZ", &utc))
        zcert_set_meta (cert, "date", "%s", date);

    //  The secret file is created 0600 from the start (umask), never
    //  readable by others even for a moment; the public one is then made
    //  world-readable on purpose.
    mode_t saved_umask = umask (077);
    int rc = zcert_save_secret (cert, secret_path);
    int error_number = errno;
    if (rc == 0) {
        rc = zcert_save_public (cert, path);
        error_number = errno;
    }
    umask (saved_umask);
    if (rc != 0) {
        fprintf (stderr, "zchat-keygen: cannot write %s: %s\n", path,
                 strerror (error_number));
        unlink (secret_path);
        goto done;
    }
    if (chmod (secret_path, 0600) != 0 || chmod (path, 0644) != 0) {
        fprintf (stderr, "zchat-keygen: cannot set the mode of %s: %s\n", path,
                 strerror (errno));
        goto done;
    }
    printf ("%s\n", zcert_public_txt (cert));
    if (fflush (stdout) != 0) {
        fprintf (stderr, "zchat-keygen: cannot write to stdout\n");
        goto done;
    }
    fprintf (stderr, "zchat-keygen: wrote %s (public) and %s (secret: keep it "
             "private)\n", path, secret_path);
    exit_code = EXIT_SUCCESS;

done:
    zcert_destroy (&cert);
    zstr_free (&secret_path);
    return exit_code;
}

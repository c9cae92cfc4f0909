//  replay — runs a fuzz target over saved inputs, without libFuzzer.
//
//  replay PATH...   each PATH is a file, or a directory whose files (and
//                   subdirectories' files) are replayed; names starting
//                   with '.' are skipped.
//
//  Linked with one tests/fuzz/fuzz_NAME.c, this turns its corpus and its
//  crash inputs into an ordinary regression test: a target that finds a
//  fault aborts (under ASan, with a report). Prints how many inputs ran
//  and exits 0; exits 1 if a path cannot be read, 2 on usage error.

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int
    LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

//  Deeper than any corpus layout; stops a symlink loop
#define REPLAY_MAX_DEPTH 8

//  --------------------------------------------------------------------------
//  Reads the whole file into a buffer of exactly its size, so that under
//  ASan a target reading one byte too far is caught, and runs the target.
//  Returns 0, or -1 (with a message) if the file cannot be read.

static int
s_replay_file (const char *path, size_t *count)
{
    int rc = -1;
    uint8_t *data = NULL;
    FILE *file = fopen (path, "rb");
    if (!file) {
        fprintf (stderr, "replay: cannot open %s: %s\n", path, strerror (errno));
        goto cleanup;
    }
    struct stat info;
    if (fstat (fileno (file), &info) != 0 || info.st_size < 0) {
        fprintf (stderr, "replay: cannot stat %s: %s\n", path, strerror (errno));
        goto cleanup;
    }
    size_t size = (size_t) info.st_size;
    data = (uint8_t *) malloc (size ? size : 1);
    if (!data) {
        fprintf (stderr, "replay: out of memory for %s (%zu bytes)\n", path, size);
        goto cleanup;
    }
    if (size && fread (data, 1, size, file) != size) {
        fprintf (stderr, "replay: cannot read %s\n", path);
        goto cleanup;
    }
    LLVMFuzzerTestOneInput (data, size);
    (*count)++;
    rc = 0;
cleanup:
    free (data);
    if (file)
        fclose (file);
    return rc;
}

static int
s_replay_path (const char *path, size_t *count, int depth)
{
    struct stat info;
    if (stat (path, &info) != 0) {
        fprintf (stderr, "replay: %s: %s\n", path, strerror (errno));
        return -1;
    }
    if (!S_ISDIR (info.st_mode))
        return s_replay_file (path, count);
    if (depth >= REPLAY_MAX_DEPTH) {
        fprintf (stderr, "replay: %s: directories nested too deep\n", path);
        return -1;
    }
    DIR *dir = opendir (path);
    if (!dir) {
        fprintf (stderr, "replay: cannot open %s: %s\n", path, strerror (errno));
        return -1;
    }
    int rc = 0;
    struct dirent *entry;
    while (rc == 0 && (entry = readdir (dir)) != NULL) {
        if (entry->d_name [0] == '.')
            continue;
        size_t length = strlen (path) + 1 + strlen (entry->d_name) + 1;
        char *child = (char *) malloc (length);
        if (!child) {
            fprintf (stderr, "replay: out of memory\n");
            rc = -1;
            break;
        }
        snprintf (child, length, "%s/%s", path, entry->d_name);
        rc = s_replay_path (child, count, depth + 1);
        free (child);
    }
    closedir (dir);
    return rc;
}

int
main (int argc, char **argv)
{
    if (argc < 2 || strcmp (argv [1], "--help") == 0 || strcmp (argv [1], "-h") == 0) {
        fprintf (stderr, "usage: %s FILE|DIRECTORY...\n", argv [0]);
        return 2;
    }
    size_t count = 0;
    for (int i = 1; i < argc; i++)
        if (s_replay_path (argv [i], &count, 0) != 0)
            return 1;
    printf ("replay: %zu inputs, no faults\n", count);
    return 0;
}

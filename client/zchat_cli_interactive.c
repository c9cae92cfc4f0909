//  zchat_cli_interactive — chatting by hand in a terminal, and the same
//  commands read line by line from a pipe.
//
//  In a terminal, libedit edits the line being typed in unbuffered mode:
//  the poll loop hands it one keystroke at a time, so messages keep
//  arriving while someone types. Each incoming line is printed above the
//  edit line (erase it, print, let libedit redraw it with its cursor), so
//  what is being typed is never mangled.
//
//  We use libedit's own interface (el_init, el_gets, el_line), not its
//  readline layer. In libedit 3.1-20221030 (Debian 12) that layer's
//  rl_line_buffer points into a buffer that el_line () moves as the line
//  grows past each 1 KiB, and is only pointed again when the edit buffer
//  itself grows: in between, every keystroke writes a NUL through the old
//  pointer, past the freed block once the line is over 3 KiB. That was a
//  heap corruption ("malloc(): invalid next size") while typing long
//  lines. el_line () returns a fresh pointer each time, used at once.
//
//  In unbuffered mode a finished line stays in the editor: leaving that
//  mode and entering it again after each line starts an empty one and
//  draws the prompt.

#include "zchat_cli.h"
#include "zchat_cli_poll.h"
#include "zchat_cli_requests.h"
#include <histedit.h>
#include <locale.h>
#include <termios.h>
#include <wchar.h>

#define S_HISTORY_LINES     500         //  lines typed that Up brings back
#define S_CONTROL_D         4           //  what libedit leaves for Ctrl-D

typedef struct {
    const zchat_cli_opts_t *opts;
    zchat_client_t *client;
    zchat_cli_rooms_t rooms;
    zchat_cli_requests_t *requests;
    bool     terminal;                  //  libedit is editing stdin
    EditLine *editor;                   //  libedit, in a terminal
    History  *history;                  //  lines typed, in a terminal
    bool     editing;                   //  an edit line is on screen
    bool     quit;                      //  /quit, end of input
    size_t   sends_failed;
    size_t   sends_timed_out;
    size_t   discarded;                 //  input lines too long to use
    long     line_number;               //  input lines read (pipe mode)
    char     prompt [ZCHAT_MAX_ROOM + 8];
    char     renamed_from [ZCHAT_MAX_NICK + 1];     //  the last rename shown
    char     renamed_to [ZCHAT_MAX_NICK + 1];
} s_chat_t;

static const char *s_commands =
    "-- commands:\n"
    "--   TEXT             say TEXT in the current room (//TEXT says /TEXT)\n"
    "--   /join ROOM       join ROOM; it becomes the current room\n"
    "--   /leave [ROOM]    leave ROOM (default: the current room)\n"
    "--   /msg NICK TEXT   a direct message to NICK\n"
    "--   /me ACTION       say ACTION as an action (* you waves)\n"
    "--   /nick NEW        change your nick\n"
    "--   /who [ROOM]      who is in ROOM (default: the current room)\n"
    "--   /rooms           every room with members\n"
    "--   /topic [TEXT]    show, or set, the topic of the current room\n"
    "--   /history [N]     the last N messages of the current room (default 20)\n"
    "--   /quit            leave (so do Ctrl-D and Ctrl-C)\n"
    "--   /help            this list";


//  Display width of a UTF-8 string in the current locale (what the cursor
//  moves per character), for finding how many rows the edit line takes.
static size_t
s_width (const char *text, size_t size)
{
    mbstate_t state;
    memset (&state, 0, sizeof state);
    size_t width = 0, index = 0;
    while (index < size) {
        wchar_t wide;
        size_t used = mbrtowc (&wide, text + index, size - index, &state);
        if (used == (size_t) -1 || used == (size_t) -2) {
            memset (&state, 0, sizeof state);
            used = 1;
            width++;
        }
        else {
            if (used == 0)
                used = 1;
            int columns = wcwidth (wide);
            width += columns > 0? (size_t) columns: 0;
        }
        index += used;
    }
    return width;
}

static int
s_columns (s_chat_t *self)
{
    int columns = 0;
    if (el_get (self->editor, EL_GETTC, "co", &columns) != 0)
        columns = 0;
    return columns > 0? columns: 80;
}


//  Clear the edit line from the screen, all its rows: up from the
//  cursor's row to the first, then clear to the end of the screen.
static void
s_erase_edit_line (s_chat_t *self, const char *prompt)
{
    size_t before = s_width (prompt, strlen (prompt));
    //  el_line () may move its buffer: use what it returns at once. Its
    //  text ends at a NUL typed with Ctrl-V, its cursor may lie beyond.
    const LineInfo *line = el_line (self->editor);
    if (line && line->cursor > line->buffer) {
        size_t size = strlen (line->buffer);
        size_t point = (size_t) (line->cursor - line->buffer);
        before += s_width (line->buffer, point < size? point: size);
    }
    size_t row = before / (size_t) s_columns (self);
    if (row > 0)
        printf ("\033[%zuA", row);
    printf ("\r\033[J");
}


//  Show text (one or more lines) to the user: in a terminal above the
//  line being edited, which libedit then draws again.
static void
s_show (s_chat_t *self, const char *text)
{
    if (self->editing) {
        s_erase_edit_line (self, self->prompt);
        printf ("%s\n", text);
        fflush (stdout);
        el_set (self->editor, EL_REFRESH);
    }
    else {
        printf ("%s\n", text);
        fflush (stdout);
    }
}

//  Show a failure as "!! text" among the messages, where whoever types
//  is looking.
static void
s_error (s_chat_t *self, const char *text)
{
    char line [512];
    snprintf (line, sizeof line, "!! %s", text);
    s_show (self, line);
}


//  The prompt names the current room.
static void
s_update_prompt (s_chat_t *self)
{
    char old_prompt [sizeof self->prompt];
    memcpy (old_prompt, self->prompt, sizeof old_prompt);
    const char *room = zchat_cli_rooms_current (&self->rooms);
    if (room)
        snprintf (self->prompt, sizeof self->prompt, "#%s> ", room);
    else
        snprintf (self->prompt, sizeof self->prompt, "> ");
    if (self->editing && strneq (old_prompt, self->prompt)) {
        s_erase_edit_line (self, old_prompt);
        fflush (stdout);
        el_set (self->editor, EL_REFRESH);      //  s_prompt gives the new one
    }
}


//  Remember a request the library took (rid > 0), or show why it
//  refused one at once (rid 0).
static void
s_track (s_chat_t *self, uint64_t rid, zchat_cli_req_kind_t kind, const char *room)
{
    if (!rid) {
        //  The library's reason may quote the broker, or what was typed
        char *reason = zchat_cli_safe (zchat_client_error (self->client));
        s_error (self, reason);
        zstr_free (&reason);
        if (kind == ZCHAT_CLI_REQ_SEND)
            self->sends_failed++;
        if (kind == ZCHAT_CLI_REQ_JOIN) {
            zchat_cli_rooms_remove (&self->rooms, room);
            s_update_prompt (self);
        }
        return;
    }
    zchat_cli_requests_add (self->requests, rid, kind, room, NULL);
}


static void
s_join (s_chat_t *self, const char *room)
{
    if (zchat_cli_rooms_add (&self->rooms, room)) {
        s_error (self, "too many rooms joined");
        return;
    }
    s_track (self, zchat_client_join (self->client, room), ZCHAT_CLI_REQ_JOIN, room);
    s_update_prompt (self);
}


//  The next word of *cursor (NULL if none), NUL-terminated in place.
static char *
s_word (char **cursor)
{
    char *start = *cursor;
    while (*start == ' ' || *start == '\t')
        start++;
    if (!*start)
        return NULL;
    char *end = start;
    while (*end && *end != ' ' && *end != '\t')
        end++;
    if (*end)
        *end++ = 0;
    *cursor = end;
    return start;
}

//  The rest of *cursor without leading blanks ("" if none).
static char *
s_rest (char **cursor)
{
    char *start = *cursor;
    while (*start == ' ' || *start == '\t')
        start++;
    return start;
}


//  Say text (size bytes, any bytes: fixed up to valid UTF-8) in the
//  current room.
static void
s_say (s_chat_t *self, const char *text, size_t size, bool action)
{
    const char *room = zchat_cli_rooms_current (&self->rooms);
    if (!room) {
        s_error (self, "you are in no room: /join ROOM first");
        self->sends_failed++;           //  a line not said: the run failed
        return;
    }
    size_t fixed_size;
    char *fixed = zchat_cli_utf8_fix (text, size, &fixed_size);
    s_track (self, zchat_client_say (self->client, room, fixed, fixed_size, action),
             ZCHAT_CLI_REQ_SEND, room);
    free (fixed);
}


//  A room named by a command, or the current room. NULL after an error.
static const char *
s_room_arg (s_chat_t *self, const char *word)
{
    if (!word) {
        const char *room = zchat_cli_rooms_current (&self->rooms);
        if (!room)
            s_error (self, "you are in no room: /join ROOM first");
        return room;
    }
    const char *room = zchat_cli_room_arg (word);
    if (!zchat_room_valid (room)) {
        s_error (self, "a room name is " ZCHAT_CLI_ROOM_RULE);
        return NULL;
    }
    return room;
}


//  One line typed or read: a /command or text for the current room.
static void
s_input (s_chat_t *self, char *line, size_t size)
{
    if (size == 0)
        return;
    if (line [0] != '/' || line [1] == '/') {
        if (line [0] == '/')
            s_say (self, line + 1, size - 1, false);
        else
            s_say (self, line, size, false);
        return;
    }
    //  Commands are text: a NUL in one ends it.
    char *cursor = line + 1;
    char *command = s_word (&cursor);
    const char *room, *word;
    if (!command)
        s_error (self, "an empty command; /help lists them");
    else
    if (streq (command, "join")) {
        //  One word: "/join bad room" joined #bad, and the lines after it
        //  went there instead of the room the user was in
        if (!(word = s_word (&cursor)) || s_word (&cursor))
            s_error (self, "usage: /join ROOM (one name, no spaces)");
        else
        if ((room = s_room_arg (self, word)))
            s_join (self, room);
    }
    else
    if (streq (command, "leave") || streq (command, "part")) {
        word = s_word (&cursor);
        if (word && s_word (&cursor))
            s_error (self, "usage: /leave [ROOM] (one name, no spaces)");
        else
        if ((room = s_room_arg (self, word))) {
            char copy [ZCHAT_MAX_ROOM + 1];
            snprintf (copy, sizeof copy, "%s", room);
            zchat_cli_rooms_remove (&self->rooms, copy);
            s_track (self, zchat_client_leave (self->client, copy), ZCHAT_CLI_REQ_LEAVE,
                     copy);
            s_update_prompt (self);
        }
    }
    else
    if (streq (command, "msg")) {
        const char *nick = s_word (&cursor);
        char *text = s_rest (&cursor);
        if (!nick || !*text)
            s_error (self, "usage: /msg NICK TEXT");
        else
        if (!zchat_nick_valid (nick))
            s_error (self, "not a valid nick");
        else {
            size_t fixed_size;
            char *fixed = zchat_cli_utf8_fix (text, strlen (text), &fixed_size);
            uint64_t rid = zchat_client_dm (self->client, nick, fixed, fixed_size, false);
            if (rid) {
                char *shown = zchat_cli_dm_sent_text (nick, fixed, fixed_size, false);
                s_show (self, shown);
                zstr_free (&shown);
            }
            s_track (self, rid, ZCHAT_CLI_REQ_SEND, NULL);
            free (fixed);
        }
    }
    else
    if (streq (command, "me")) {
        char *text = s_rest (&cursor);
        if (!*text)
            s_error (self, "usage: /me ACTION");
        else
            s_say (self, text, strlen (text), true);
    }
    else
    if (streq (command, "nick")) {
        if (!(word = s_word (&cursor)))
            s_error (self, "usage: /nick NEW");
        else
        if (!zchat_nick_valid (word))
            s_error (self, "a nick is " ZCHAT_CLI_NICK_RULE);
        else
            s_track (self, zchat_client_set_nick (self->client, word), ZCHAT_CLI_REQ_OTHER,
                     NULL);
    }
    else
    if (streq (command, "who") || streq (command, "names")) {
        if ((room = s_room_arg (self, s_word (&cursor))))
            s_track (self, zchat_client_who (self->client, room), ZCHAT_CLI_REQ_OTHER, room);
    }
    else
    if (streq (command, "rooms") || streq (command, "list"))
        s_track (self, zchat_client_rooms (self->client), ZCHAT_CLI_REQ_OTHER, NULL);
    else
    if (streq (command, "topic")) {
        char *topic = s_rest (&cursor);
        if ((room = s_room_arg (self, NULL))) {
            if (*topic && (strlen (topic) > ZCHAT_MAX_TOPIC
                       ||  !zchat_utf8_valid (topic, strlen (topic))))
                s_error (self, "a topic is at most 255 bytes of UTF-8");
            else
                s_track (self, zchat_client_topic (self->client, room, *topic? topic: NULL),
                         *topic? ZCHAT_CLI_REQ_TOPIC_SET: ZCHAT_CLI_REQ_OTHER, room);
        }
    }
    else
    if (streq (command, "history")) {
        long count = 20;
        word = s_word (&cursor);
        char *end = NULL;
        if (word)
            count = strtol (word, &end, 10);
        if (word && (*end || count < 1 || count > 65535))
            s_error (self, "usage: /history [N], N from 1 to 65535");
        else
        if ((room = s_room_arg (self, NULL)))
            s_track (self, zchat_client_history (self->client, room, 0, 0, (int) count),
                     ZCHAT_CLI_REQ_OTHER, room);
    }
    else
    if (streq (command, "quit") || streq (command, "exit"))
        self->quit = true;
    else
    if (streq (command, "help"))
        s_show (self, s_commands);
    else {
        char message [128];
        snprintf (message, sizeof message, "unknown command /%.64s; /help lists them",
                  command);
        s_error (self, message);
    }
}


//  A line of piped input over ZCHAT_CLI_MAX_LINE: none of it is said or
//  run (a piece of it could start with '/'). Said where other input
//  errors are, and counted so that the run ends as a failure.
static void
s_line_too_long (s_chat_t *self)
{
    self->discarded++;
    char message [128];
    snprintf (message, sizeof message,
              "line %ld longer than %d bytes: discarded whole, none of it sent or run",
              self->line_number, ZCHAT_CLI_MAX_LINE);
    s_error (self, message);
}


//  A line typed (NULL at Ctrl-D on an empty line), which we own. The line
//  is erased from the screen: what was said comes back from the broker,
//  stamped, like everyone else's.
static void
s_on_line (s_chat_t *self, char *line)
{
    if (!line) {
        self->quit = true;
        printf ("\r\033[K");          //  no "^D" left behind
        fflush (stdout);
        return;
    }
    size_t size = strlen (line);
    size_t rows = (s_width (self->prompt, strlen (self->prompt)) + s_width (line, size))
                / (size_t) s_columns (self) + 1;
    printf ("\033[%zuA\r\033[J", rows);
    fflush (stdout);
    if (size) {
        HistEvent event;
        history (self->history, &event, H_ENTER, line);
    }
    s_input (self, line, size);
    free (line);
}


//  Hand libedit the next keystroke; act on the line once one is finished.
static void
s_keystroke (s_chat_t *self)
{
    int count = 0;
    el_gets (self->editor, &count);
    //  The edit buffer, wide characters: it says whether the line ended
    const LineInfoW *wide = el_wline (self->editor);
    if (wide->lastchar == wide->buffer)
        return;
    wchar_t last = wide->lastchar [-1];
    bool eof = wide->lastchar - wide->buffer == 1 && last == S_CONTROL_D;
    if (!eof && last != L'\n' && last != L'\r')
        return;
    char *line = NULL;
    if (!eof) {
        //  Up to a NUL typed with Ctrl-V, if any: the rest is not encoded
        const LineInfo *narrow = el_line (self->editor);
        line = strdup (narrow->buffer);
        assert (line);
        size_t size = strlen (line);
        if (size && (line [size - 1] == '\n' || line [size - 1] == '\r'))
            line [size - 1] = 0;
    }
    //  libedit still holds the finished line: nothing may redraw it until
    //  unbuffered mode starts an empty one (see the banner).
    self->editing = false;
    el_set (self->editor, EL_UNBUFFERED, 0);
    s_on_line (self, line);
    if (!self->quit) {
        el_set (self->editor, EL_UNBUFFERED, 1);
        self->editing = true;
    }
}


//  libedit asks for the prompt whenever it draws the line.
static char *
s_prompt (EditLine *editor)
{
    s_chat_t *self = NULL;
    el_get (editor, EL_CLIENTDATA, (void **) &self);
    assert (self);
    return self->prompt;
}

//  Set up libedit on the terminal, as its readline layer did; editing
//  starts later. Returns 0, or -1 if libedit could not start.
static int
s_editor_new (s_chat_t *self)
{
    self->editor = el_init ("zchat", stdin, stdout, stderr);
    self->history = history_init ();
    if (!self->editor || !self->history)
        return -1;
    EditLine *editor = self->editor;
    HistEvent event;
    history (self->history, &event, H_SETSIZE, S_HISTORY_LINES);
    el_set (editor, EL_HIST, history, self->history);
    el_set (editor, EL_CLIENTDATA, self);
    el_set (editor, EL_PROMPT, s_prompt);
    //  czmq's handler turns SIGINT into zsys_interrupted; libedit must not
    //  install its own around each keystroke.
    el_set (editor, EL_SIGNAL, 0);
    el_set (editor, EL_EDITOR, "emacs");
    el_set (editor, EL_BIND, "^R", "em-inc-search-prev", NULL);
    //  Home, End, Delete, Insert and Ctrl-arrows in common terminals
    static const char *bindings [][2] = {
        { "\\e[1~", "ed-move-to-beg" },     { "\\e[4~", "ed-move-to-end" },
        { "\\e[7~", "ed-move-to-beg" },     { "\\e[8~", "ed-move-to-end" },
        { "\\e[H", "ed-move-to-beg" },      { "\\e[F", "ed-move-to-end" },
        { "\\e[3~", "ed-delete-next-char" },
        { "\\e[2~", "em-toggle-overwrite" },
        { "\\e[1;5C", "em-next-word" },     { "\\e[1;5D", "ed-prev-word" },
        { "\\e[5C", "em-next-word" },       { "\\e[5D", "ed-prev-word" },
        { "\\e\\e[C", "em-next-word" },     { "\\e\\e[D", "ed-prev-word" },
    };
    for (size_t index = 0; index < sizeof bindings / sizeof bindings [0]; index++)
        el_set (editor, EL_BIND, bindings [index][0], bindings [index][1], NULL);
    el_source (editor, NULL);           //  ~/.editrc, as any libedit program
    return 0;
}

//  The terminal changed under us, told by a signal: a new size (SIGWINCH),
//  or we were stopped (Ctrl-Z) and go on (SIGCONT), with the terminal as
//  the shell left it, line by line and echoing. libedit's own handlers
//  are off (see s_editor_new), so we tell it: the size, and the editing
//  mode again (it thinks it is still in it, so out of it first).
static volatile sig_atomic_t s_resized = 0;
static volatile sig_atomic_t s_continued = 0;

static void
s_on_terminal_signal (int signum)
{
    if (signum == SIGWINCH)
        s_resized = 1;
    else
        s_continued = 1;
}

static void
s_terminal_changed (s_chat_t *self)
{
    bool continued = s_continued;
    s_resized = s_continued = 0;
    el_resize (self->editor);
    if (!self->editing)
        return;
    if (continued) {
        el_set (self->editor, EL_PREP_TERM, 0);
        el_set (self->editor, EL_PREP_TERM, 1);
    }
    el_set (self->editor, EL_REFRESH);
}

//  Give the terminal back. Safe when libedit never started.
static void
s_editor_destroy (s_chat_t *self)
{
    self->editing = false;
    if (self->editor) {
        el_set (self->editor, EL_UNBUFFERED, 0);
        el_end (self->editor);
        self->editor = NULL;
    }
    if (self->history) {
        history_end (self->history);
        self->history = NULL;
    }
}


//  Show one event, after settling the request it answers.
static void
s_event (s_chat_t *self, zchat_event_t *event)
{
    zchat_cli_request_t *request = zchat_cli_requests_lookup (self->requests, event->id);
    if (request && event->type == ZCHAT_EV_ACK) {
        zchat_cli_requests_remove (self->requests, event->id);
        return;                 //  said and stored: the room shows it
    }
    if (request && event->type == ZCHAT_EV_ERROR) {
        const char *what = request->kind == ZCHAT_CLI_REQ_SEND? "not sent"
                         : request->kind == ZCHAT_CLI_REQ_JOIN? "cannot join": NULL;
        //  The reason is the broker's text: it must not drive the terminal
        char *reason = zchat_cli_safe (event->reason);
        char line [512];
        if (what && request->kind == ZCHAT_CLI_REQ_JOIN)
            snprintf (line, sizeof line, "!! cannot join #%s: %s (%d)", request->room,
                      reason, zchat_cli_error_code (event));
        else
        if (what)
            snprintf (line, sizeof line, "!! not sent%s%s: %s (%d)",
                      *request->room? " to #": "", request->room,
                      reason, zchat_cli_error_code (event));
        else
            snprintf (line, sizeof line, "!! %s (%d)", reason,
                      zchat_cli_error_code (event));
        zstr_free (&reason);
        s_show (self, line);
        if (request->kind == ZCHAT_CLI_REQ_SEND) {
            self->sends_failed++;
            if (event->code == ZCHAT_CLIENT_TIMEOUT)
                self->sends_timed_out++;
        }
        if (request->kind == ZCHAT_CLI_REQ_JOIN) {
            zchat_cli_rooms_remove (&self->rooms, request->room);
            s_update_prompt (self);
        }
        zchat_cli_requests_remove (self->requests, event->id);
        return;
    }
    bool topic_set = request && request->kind == ZCHAT_CLI_REQ_TOPIC_SET;
    if (request && event->type != ZCHAT_EV_MESSAGE)
        zchat_cli_requests_remove (self->requests, event->id);
    //  Said once, not once per room: our own comings and goings (JOINED
    //  and LEFT say so), our rename, the topic we set (the room's topic
    //  event says so), and someone's rename seen in several rooms.
    if ((event->type == ZCHAT_EV_JOIN || event->type == ZCHAT_EV_LEAVE)
    &&  streq (event->nick, zchat_client_nick (self->client)))
        return;
    if (topic_set && event->type == ZCHAT_EV_TOPIC)
        return;
    if (event->type == ZCHAT_EV_NICK && !event->id) {
        if (streq (event->new_nick, zchat_client_nick (self->client))
        ||  streq (event->nick, zchat_client_nick (self->client))
        ||  (streq (event->nick, self->renamed_from)
          && streq (event->new_nick, self->renamed_to)))
            return;
        snprintf (self->renamed_from, sizeof self->renamed_from, "%s", event->nick);
        snprintf (self->renamed_to, sizeof self->renamed_to, "%s", event->new_nick);
    }
    char *text = zchat_cli_event_text (event, self->rooms.count > 1);
    if (text) {
        s_show (self, text);
        zstr_free (&text);
    }
}


//  ---------------------------------------------------------------------
//  Run interactively (terminal) or on lines from a pipe. Returns the exit
//  code.

int
zchat_cli_interactive_run (const zchat_cli_opts_t *opts, bool terminal)
{
    s_chat_t self = { .opts = opts, .terminal = terminal };
    int history = opts->history >= 0? opts->history
                : terminal? ZCHAT_CLI_INTERACTIVE_HISTORY: 0;
    int exit_code = zchat_cli_connect (opts, history, &self.client);
    if (exit_code)
        return exit_code;
    self.requests = zchat_cli_requests_new ();
    s_update_prompt (&self);

    struct termios saved;
    bool saved_ok = false;
    if (terminal) {
        //  libedit needs the locale's character set for UTF-8 input;
        //  numbers stay in the C locale.
        setlocale (LC_CTYPE, "");
        saved_ok = tcgetattr (STDIN_FILENO, &saved) == 0;
        if (s_editor_new (&self)) {
            s_editor_destroy (&self);
            zchat_cli_fail ("cannot set up line editing on this terminal");
            zchat_cli_requests_destroy (&self.requests);
            zchat_client_destroy (&self.client);
            return ZCHAT_EXIT_FAILED;
        }
        struct sigaction action = { .sa_handler = s_on_terminal_signal };
        sigemptyset (&action.sa_mask);
        sigaction (SIGWINCH, &action, NULL);
        sigaction (SIGCONT, &action, NULL);
        char welcome [256];
        snprintf (welcome, sizeof welcome, "-- connected to %s as %s; /help lists commands",
                  opts->server, zchat_client_nick (self.client));
        s_show (&self, welcome);
    }
    //  The last room joined is the current one: the first --room.
    for (size_t index = opts->room_count; index > 0; index--)
        s_join (&self, opts->rooms [index - 1]);
    if (terminal) {
        //  Raw terminal, one keystroke at a time; draws the prompt, now
        //  naming the room.
        el_set (self.editor, EL_UNBUFFERED, 1);
        self.editing = true;
    }

    zchat_cli_lines_t *lines = terminal? NULL: zchat_cli_lines_new (STDIN_FILENO);
    zchat_cli_poll_t *poller = zchat_cli_poll_new (self.client, STDIN_FILENO);
    bool stdin_eof = false;

    while (true) {
        size_t size;
        bool too_long;
        char *line;
        while (lines && !self.quit
           &&  (line = zchat_cli_lines_next (lines, &size, &too_long))) {
            self.line_number++;
            if (too_long)
                s_line_too_long (&self);
            else
                s_input (&self, line, size);
        }
        if (lines && zchat_cli_lines_done (lines))
            self.quit = true;
        //  Leave once every request is answered, or --timeout passed.
        if (self.quit
        &&  zchat_cli_requests_drained (self.requests, zchat_cli_timeout_ms (opts)))
            break;
        bool reading = !self.quit && !stdin_eof;
        int64_t deadline = zchat_cli_requests_deadline (self.requests);
        zchat_cli_poll_stdin_t woke = zchat_cli_poll_wait (poller, reading, deadline);
        if (terminal && (s_resized || s_continued))
            s_terminal_changed (&self);
        if (woke != ZCHAT_CLI_POLL_QUIET && !terminal) {
            if (zchat_cli_lines_fill (lines))
                stdin_eof = true;
        }
        else
        if (woke == ZCHAT_CLI_POLL_INPUT)
            s_keystroke (&self);
        else
        if (woke == ZCHAT_CLI_POLL_HANGUP)
            self.quit = true;           //  the terminal hung up
        zchat_event_t *event;
        while ((event = zchat_client_next (self.client, 0))) {
            s_event (&self, event);
            zchat_event_destroy (&event);
        }
        if (zchat_cli_poll_interrupted (poller)) {
            exit_code = ZCHAT_EXIT_INTERRUPTED;
            break;
        }
        if (ferror (stdout)) {
            exit_code = ZCHAT_EXIT_FAILED;
            break;
        }
    }
    //  What was sent but never answered is lost: say so.
    size_t unanswered = zchat_cli_requests_count (self.requests, ZCHAT_CLI_REQ_SEND);
    if (terminal) {
        s_editor_destroy (&self);
        if (saved_ok)
            tcsetattr (STDIN_FILENO, TCSANOW, &saved);
        if (exit_code == ZCHAT_EXIT_INTERRUPTED)
            printf ("\n");
        fflush (stdout);
    }
    if (exit_code == ZCHAT_EXIT_INTERRUPTED)
        zchat_cli_fail ("interrupted");
    else
    if (exit_code == ZCHAT_EXIT_FAILED)
        zchat_cli_fail ("cannot write to stdout");
    else
    if (unanswered || (!terminal && (self.sends_failed || self.discarded))) {
        size_t late = unanswered + self.sends_timed_out;
        size_t refused = self.sends_failed - self.sends_timed_out;
        char discarded [80] = "";
        if (self.discarded)
            snprintf (discarded, sizeof discarded, ", %zu line%s over %d bytes discarded",
                      self.discarded, self.discarded == 1? "": "s", ZCHAT_CLI_MAX_LINE);
        size_t lost = late + refused + self.discarded;
        zchat_cli_fail ("%zu message%s not sent: %zu not acknowledged in time, %zu refused%s",
                        lost, lost == 1? "": "s", late, refused, discarded);
        exit_code = unanswered || self.sends_timed_out? ZCHAT_EXIT_NOT_ACKED
                                                      : ZCHAT_EXIT_FAILED;
    }
    zchat_cli_poll_destroy (&poller);
    zchat_cli_lines_destroy (&lines);
    zchat_cli_requests_destroy (&self.requests);
    zchat_client_destroy (&self.client);
    return exit_code;
}

// config.c: the INI and --set parsing of the config keys (config_keys.c), their checks, the
// help and the INI writer.
#include "train/config.h"
#include "train/config_keys.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "data/tokenizer.h"
#include "kernels/common.h"

// The table of keys (config_keys.c): defaults, parsing, checks, help and the written INI all
// read it.
#define CONFIG_NKEYS config_nkeys

// The longest line config_load_file accepts: room for "key = " and a PB_PATH_MAX value.
#define CONFIG_MAX_LINE (PB_PATH_MAX + 512)

// ----------------------------------------------------------------------------
// Looking keys up, and suggesting one for a typo.

static int section_known(const char *section) {
    for (size_t i = 0; i < CONFIG_NKEYS; i++)
        if (strcmp(config_keys[i].section, section) == 0) return 1;
    return 0;
}

static const config_key *find_key(const char *section, const char *key) {
    for (size_t i = 0; i < CONFIG_NKEYS; i++)
        if (strcmp(config_keys[i].section, section) == 0 && strcmp(config_keys[i].key, key) == 0)
            return &config_keys[i];
    return NULL;
}

// Levenshtein distance; names longer than 63 bytes count as far from everything.
static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return INT_MAX;
    int prev[64], cur[64];
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(int) * (lb + 1));
    }
    return prev[lb];
}

// The known key the user most likely meant by section.key, or NULL: the nearest full name
// within edit distance 2, else the same key name in another section, else a key of the same
// section that one name is a prefix of ("train.warmup" -> "train.warmup_steps").
static const config_key *suggest_key(const char *section, const char *key) {
    char want[160], have[160];
    snprintf(want, sizeof want, "%s.%s", section, key);
    const config_key *best = NULL;
    int best_d = 3;
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        snprintf(have, sizeof have, "%s.%s", config_keys[i].section, config_keys[i].key);
        int d = edit_distance(want, have);
        if (d < best_d) best_d = d, best = &config_keys[i];
    }
    if (best) return best;
    for (size_t i = 0; i < CONFIG_NKEYS; i++)
        if (strcmp(config_keys[i].key, key) == 0) return &config_keys[i];
    size_t lk = strlen(key);
    for (size_t i = 0; i < CONFIG_NKEYS && lk > 0; i++) {
        const config_key *k = &config_keys[i];
        size_t lc = strlen(k->key);
        if (strcmp(k->section, section) == 0 && strncmp(k->key, key, lk < lc ? lk : lc) == 0)
            return k;
    }
    return NULL;
}

static const char *suggest_section(const char *section) {
    const char *best = NULL;
    int best_d = 3;
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        int d = edit_distance(section, config_keys[i].section);
        if (d < best_d) best_d = d, best = config_keys[i].section;
    }
    return best;
}

// " (did you mean 'train.lr'?)", or "" when nothing is close.
static void key_hint(const char *section, const char *key, char *hint, size_t n) {
    const config_key *k = suggest_key(section, key);
    if (k) snprintf(hint, n, " (did you mean '%s.%s'?)", k->section, k->key);
    else hint[0] = '\0';
}

static void section_hint(const char *section, char *hint, size_t n) {
    const char *s = suggest_section(section);
    if (s) snprintf(hint, n, " (did you mean [%s]?)", s);
    else hint[0] = '\0';
}

// ----------------------------------------------------------------------------
// Values: text -> field, with every check of one key. Each failure writes the problem
// after the key, e.g. "'abc' is not a number", for the caller to prefix.

static void *field_of(const config_key *k, pb_config *c) { return (char *)c + k->offset; }
static const void *cfield_of(const config_key *k, const pb_config *c) {
    return (const char *)c + k->offset;
}

static void format_bound(double v, char *buf, size_t n) { snprintf(buf, n, "%.17g", v); }

// "must be >= 1" if v is outside the key's bounds, else 0 and nothing written.
static int out_of_bounds(const config_key *k, double v, char *why, size_t n) {
    char b[32];
    if (k->has_min && (k->min_open ? !(v > k->min) : !(v >= k->min))) {
        format_bound(k->min, b, sizeof b);
        snprintf(why, n, "must be %s %s", k->min_open ? ">" : ">=", b);
        return 1;
    }
    if (k->has_max && (k->max_open ? !(v < k->max) : !(v <= k->max))) {
        format_bound(k->max, b, sizeof b);
        snprintf(why, n, "must be %s %s", k->max_open ? "<" : "<=", b);
        return 1;
    }
    return 0;
}

static int is_choice(const config_key *k, const char *s) {
    size_t ls = strlen(s);
    for (const char *p = k->choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t lp = bar ? (size_t)(bar - p) : strlen(p);
        if (lp == ls && strncmp(p, s, lp) == 0) return 1;
        if (!bar) break;
        p = bar + 1;
    }
    return 0;
}

// Shortest "%g" text that reads back as exactly v, so written configs round-trip.
static void format_double(double v, char *buf, size_t n) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

// The value as INI text; strings point into c, numbers are written into buf.
static const char *format_value(const config_key *k, const pb_config *c, char *buf, size_t n) {
    const void *p = cfield_of(k, c);
    switch (k->type) {
    case CONFIG_INT: snprintf(buf, n, "%d", *(const int *)p); break;
    case CONFIG_LONG: snprintf(buf, n, "%ld", *(const long *)p); break;
    case CONFIG_U64: snprintf(buf, n, "%llu", *(const unsigned long long *)p); break;
    case CONFIG_DOUBLE: format_double(*(const double *)p, buf, n); break;
    case CONFIG_BOOL: snprintf(buf, n, "%s", *(const int *)p ? "true" : "false"); break;
    case CONFIG_STRING: return (const char *)p;
    }
    return buf;
}

// Quote a value for a message, cut short when long so the message stays one readable line.
static void quote(const char *s, char *buf, size_t n) {
    if (strlen(s) > 40) snprintf(buf, n, "'%.32s...'", s);
    else snprintf(buf, n, "'%s'", s);
}

// Parse text into k's field of c. Returns 0, or -1 with the problem in why; c is written
// only on success.
static int set_value(const config_key *k, pb_config *c, const char *text, char *why, size_t n) {
    char q[64], b[96];
    quote(text, q, sizeof q);
    void *p = field_of(k, c);
    char *end;
    errno = 0;
    switch (k->type) {
    case CONFIG_INT:
    case CONFIG_LONG: {
        long v = strtol(text, &end, 10);
        if (end == text || *end != '\0') return snprintf(why, n, "%s is not an integer", q), -1;
        if (errno == ERANGE || (k->type == CONFIG_INT && (v < INT_MIN || v > INT_MAX)))
            return snprintf(why, n, "%s is out of range", q), -1;
        if (out_of_bounds(k, (double)v, b, sizeof b)) return snprintf(why, n, "%s %s", q, b), -1;
        if (k->type == CONFIG_INT) *(int *)p = (int)v;
        else *(long *)p = v;
        return 0;
    }
    case CONFIG_U64: {
        // strtoull would wrap "-1" to 2^64-1; only digits are an unsigned integer.
        if (!isdigit((unsigned char)text[0]))
            return snprintf(why, n, "%s is not a non-negative integer", q), -1;
        unsigned long long v = strtoull(text, &end, 10);
        if (*end != '\0') return snprintf(why, n, "%s is not a non-negative integer", q), -1;
        if (errno == ERANGE) return snprintf(why, n, "%s is out of range", q), -1;
        if (out_of_bounds(k, (double)v, b, sizeof b)) return snprintf(why, n, "%s %s", q, b), -1;
        *(unsigned long long *)p = v;
        return 0;
    }
    case CONFIG_DOUBLE: {
        double v = strtod(text, &end);
        if (end == text || *end != '\0') return snprintf(why, n, "%s is not a number", q), -1;
        // inf, nan and overflow ("1e999") would poison the run long after startup.
        if (!isfinite(v)) return snprintf(why, n, "%s is not a finite number", q), -1;
        if (out_of_bounds(k, v, b, sizeof b)) return snprintf(why, n, "%s %s", q, b), -1;
        *(double *)p = v;
        return 0;
    }
    case CONFIG_BOOL: {
        static const char *const yes[] = {"true", "1", "yes", "on"};
        static const char *const no[] = {"false", "0", "no", "off"};
        for (int i = 0; i < 4; i++) {
            if (strcasecmp(text, yes[i]) == 0) return *(int *)p = 1, 0;
            if (strcasecmp(text, no[i]) == 0) return *(int *)p = 0, 0;
        }
        return snprintf(why, n, "%s is not true or false", q), -1;
    }
    case CONFIG_STRING: {
        size_t len = strlen(text);
        if (len >= k->size)
            return snprintf(why, n, "%s is too long (max %zu characters)", q, k->size - 1), -1;
        if (k->nonempty && len == 0) return snprintf(why, n, "must not be empty"), -1;
        if (k->choices && !is_choice(k, text))
            return snprintf(why, n, "%s must be one of %s", q, k->choices), -1;
        // Only --set can bring these in; refuse what config_write_ini could not write back.
        for (size_t i = 0; i < len; i++) {
            unsigned char ch = (unsigned char)text[i];
            if (iscntrl(ch)) return snprintf(why, n, "%s contains a control character", q), -1;
            if (ch == ';' && (i == 0 || isspace((unsigned char)text[i - 1])))
                return snprintf(why, n, "%s has a ';' that an INI file reads as a comment", q), -1;
        }
        memset(p, 0, k->size);  // a zeroed tail keeps memcmp of two configs meaningful
        memcpy(p, text, len);
        return 0;
    }
    }
    PB_ASSERT(0);
    return -1;
}

// ----------------------------------------------------------------------------
// Defaults

void config_defaults(pb_config *c) {
    // Zero the padding and string tails too, so equal configs are equal bytes.
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const config_key *k = &config_keys[i];
        // The row's type must match its field; a mismatch is a bug in the table.
        switch (k->type) {
        case CONFIG_INT:
        case CONFIG_BOOL: PB_ASSERT(k->size == sizeof(int)); break;
        case CONFIG_LONG: PB_ASSERT(k->size == sizeof(long)); break;
        case CONFIG_U64: PB_ASSERT(k->size == sizeof(unsigned long long)); break;
        case CONFIG_DOUBLE: PB_ASSERT(k->size == sizeof(double)); break;
        case CONFIG_STRING: PB_ASSERT(k->size > 1); break;
        }
        if (!k->def) continue;  // required: stays empty until the user sets it
        char why[256];
        int rc = set_value(k, c, k->def, why, sizeof why);
        PB_ASSERT(rc == 0);  // every default passes its own key's checks
    }
}

// ----------------------------------------------------------------------------
// INI files. libinih does the parsing; we hand it lines through our own reader, which
// counts them (Debian's inih is built without INI_HANDLER_LINENO, so the handler is not
// told the line) and remembers where the last [section] header was.

typedef struct {
    FILE *f;
    const char *path;
    pb_config *c;
    char *buf;            // getline's buffer
    size_t bufcap;
    int lineno;           // the line inih is working on
    int section_lineno;   // line of the last "[section]" header
    int err_line;         // line of the first error we found (0 = none yet)
    char *err;
    size_t errlen;
} config_parser;

static void parser_fail(config_parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void parser_fail(config_parser *p, int line, const char *fmt, ...) {
    if (p->err_line) return;  // the first error is the one reported
    int off = snprintf(p->err, p->errlen, "%s:%d: ", p->path, line);
    if (off < 0 || (size_t)off >= p->errlen) off = (int)(p->errlen ? p->errlen - 1 : 0);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + off, p->errlen - (size_t)off, fmt, ap);
    va_end(ap);
    p->err_line = line;
}

// inih's fgets-style reader: one physical line per call.
static char *config_reader(char *str, int num, void *stream) {
    config_parser *p = stream;
    errno = 0;
    ssize_t n = getline(&p->buf, &p->bufcap, p->f);
    if (n < 0) {
        // A directory opens fine and fails here with EISDIR.
        if (ferror(p->f) && !p->err_line) {
            snprintf(p->err, p->errlen, "%s: cannot read: %s", p->path, strerror(errno));
            p->err_line = p->lineno + 1;
        }
        return NULL;
    }
    p->lineno++;
    char *s = p->buf;
    if (p->lineno == 1 && (unsigned char)s[0] == 0xEF && (unsigned char)s[1] == 0xBB &&
        (unsigned char)s[2] == 0xBF)
        s += 3;  // UTF-8 byte order mark
    // inih would read an indented line as the continuation of the previous value; here an
    // indented line is an ordinary line, as most INI readers take it.
    while (*s == ' ' || *s == '\t') s++;
    size_t len = strlen(s), content = len;
    while (content > 0 && (s[content - 1] == '\n' || s[content - 1] == '\r')) content--;
    // inih needs 3 bytes beyond the text ("\r\n" and the NUL); we copy all of len.
    if (content + 3 > (size_t)num || len + 1 > (size_t)num) {
        parser_fail(p, p->lineno, "line is too long (max %d characters)", num - 3);
        return NULL;
    }
    if (*s == '[') p->section_lineno = p->lineno;
    memcpy(str, s, len + 1);
    return str;
}

static int config_handler(void *user, const char *section, const char *name, const char *value) {
    config_parser *p = user;
    if (p->err_line) return 1;  // inih keeps going after an error; we report the first
    char hint[160], why[256];
    if (section[0] == '\0') {
        key_hint(section, name, hint, sizeof hint);
        parser_fail(p, p->lineno, "key '%s' is outside any [section]%s", name, hint);
        return 0;
    }
    if (!section_known(section)) {
        section_hint(section, hint, sizeof hint);
        parser_fail(p, p->section_lineno, "unknown section [%s]%s", section, hint);
        return 0;
    }
    const config_key *k = find_key(section, name);
    if (!k) {
        key_hint(section, name, hint, sizeof hint);
        parser_fail(p, p->lineno, "unknown key '%s.%s'%s", section, name, hint);
        return 0;
    }
    // A key given twice: the later line wins, as each line simply sets the field again.
    if (set_value(k, p->c, value, why, sizeof why) != 0) {
        parser_fail(p, p->lineno, "%s.%s: %s", k->section, k->key, why);
        return 0;
    }
    return 1;
}

int config_load_file(pb_config *c, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    // Work on a copy, so that a file with an error changes nothing.
    pb_config tmp;
    memcpy(&tmp, c, sizeof tmp);
    config_parser p = {.f = f, .path = path, .c = &tmp, .err = err, .errlen = errlen};
    // Debian's libinih takes its line limit at run time (its INI_RUNTIME_OPTIONS); the
    // built-in 200 bytes is too short for a PB_PATH_MAX glob.
    int saved_max_line = ini_max_line;
    ini_max_line = CONFIG_MAX_LINE;
    int rc = ini_parse_stream(config_reader, &p, config_handler, &p);
    ini_max_line = saved_max_line;
    free(p.buf);
    fclose(f);
    // rc is the first line inih saw an error on: ours (handler) or its own (syntax).
    if (rc > 0 && (p.err_line == 0 || rc < p.err_line)) {
        snprintf(err, errlen, "%s:%d: syntax error", path, rc);
        return -1;
    }
    if (rc < 0 && !p.err_line) {
        snprintf(err, errlen, "%s: out of memory while parsing", path);
        return -1;
    }
    if (p.err_line) return -1;
    memcpy(c, &tmp, sizeof tmp);
    return 0;
}

// ----------------------------------------------------------------------------
// --set section.key=value

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

int config_set(pb_config *c, const char *assignment, char *err, size_t errlen) {
    size_t len = strlen(assignment);
    char *copy = pb_malloc(len + 1);
    memcpy(copy, assignment, len + 1);
    int rc = -1;
    char hint[160], why[256];
    // Split at the first '=' (values may contain '='), then the name at its first '.'.
    char *eq = strchr(copy, '=');
    char *dot = eq ? memchr(copy, '.', (size_t)(eq - copy)) : NULL;
    if (!eq || !dot) {
        snprintf(err, errlen, "--set %s: expected section.key=value", assignment);
        goto done;
    }
    *eq = '\0';
    *dot = '\0';
    // Whitespace around the parts is dropped, as in a file.
    char *section = trim(copy), *key = trim(dot + 1), *value = trim(eq + 1);
    if (!*section || !*key) {
        snprintf(err, errlen, "--set %s: expected section.key=value", assignment);
        goto done;
    }
    if (!section_known(section)) {
        section_hint(section, hint, sizeof hint);
        snprintf(err, errlen, "--set %s: unknown section [%s]%s", assignment, section, hint);
        goto done;
    }
    const config_key *k = find_key(section, key);
    if (!k) {
        key_hint(section, key, hint, sizeof hint);
        snprintf(err, errlen, "--set %s: unknown key '%s.%s'%s", assignment, section, key, hint);
        goto done;
    }
    if (set_value(k, c, value, why, sizeof why) != 0) {
        snprintf(err, errlen, "--set %s: %s.%s: %s", assignment, k->section, k->key, why);
        goto done;
    }
    rc = 0;
done:
    free(copy);
    return rc;
}

// ----------------------------------------------------------------------------
// Validation: every key within its own limits (the struct may have been filled by code,
// not the parser), then the checks that involve several keys.

int config_validate(const pb_config *c, char *err, size_t errlen) {
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const config_key *k = &config_keys[i];
        if (!k->def && ((const char *)cfield_of(k, c))[0] == '\0') {
            snprintf(err, errlen,
                     "missing required key %s.%s "
                     "(set it in the config file or with --set %s.%s=%s)",
                     k->section, k->key, k->section, k->key, k->metavar ? k->metavar : "VALUE");
            return -1;
        }
    }
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const config_key *k = &config_keys[i];
        const void *p = cfield_of(k, c);
        char buf[64], why[96];
        double v = 0;
        switch (k->type) {
        case CONFIG_INT: v = *(const int *)p; break;
        case CONFIG_LONG: v = (double)*(const long *)p; break;
        case CONFIG_U64: v = (double)*(const unsigned long long *)p; break;
        case CONFIG_DOUBLE:
            v = *(const double *)p;
            if (!isfinite(v)) {
                snprintf(err, errlen, "%s.%s (%g) must be a finite number", k->section, k->key, v);
                return -1;
            }
            break;
        case CONFIG_BOOL:
            if (*(const int *)p != 0 && *(const int *)p != 1) {
                snprintf(err, errlen, "%s.%s (%d) must be 0 or 1", k->section, k->key,
                         *(const int *)p);
                return -1;
            }
            continue;
        case CONFIG_STRING: {
            const char *s = p;
            if (!memchr(s, '\0', k->size)) {
                snprintf(err, errlen, "%s.%s is longer than %zu characters", k->section, k->key,
                         k->size - 1);
                return -1;
            }
            if (k->nonempty && !*s) {
                snprintf(err, errlen, "%s.%s must not be empty", k->section, k->key);
                return -1;
            }
            if (k->choices && !is_choice(k, s)) {
                snprintf(err, errlen, "%s.%s (%s) must be one of %s", k->section, k->key, s,
                         k->choices);
                return -1;
            }
            continue;
        }
        }
        if (out_of_bounds(k, v, why, sizeof why)) {
            snprintf(err, errlen, "%s.%s (%s) %s", k->section, k->key,
                     format_value(k, c, buf, sizeof buf), why);
            return -1;
        }
    }

    // Keys that must agree with one another (config_check.c).
    return config_check_combinations(c, err, errlen);
}

// ----------------------------------------------------------------------------
// Help and the written INI

static const char *type_name(const config_key *k) {
    switch (k->type) {
    case CONFIG_INT:
    case CONFIG_LONG: return "int";
    case CONFIG_U64: return "uint";
    case CONFIG_DOUBLE: return "float";
    case CONFIG_BOOL: return "bool";
    case CONFIG_STRING: return k->choices ? k->choices : "string";
    }
    return "?";
}

static const char *default_text(const config_key *k) {
    if (!k->def) return "(required)";
    if (!k->def[0]) return "\"\"";
    return k->def;
}

void config_print_help(FILE *f) {
    int wname = 0, wtype = 0, wdef = 0;
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const config_key *k = &config_keys[i];
        int ln = (int)(strlen(k->section) + 1 + strlen(k->key));
        int lt = (int)strlen(type_name(k)), ld = (int)strlen(default_text(k));
        if (ln > wname) wname = ln;
        if (lt > wtype) wtype = lt;
        if (ld > wdef) wdef = ld;
    }
    fprintf(f, "Config keys (set in an INI file's [section], or with --set section.key=value):\n");
    const char *section = "";
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const config_key *k = &config_keys[i];
        if (strcmp(section, k->section) != 0) {
            section = k->section;
            fprintf(f, "\n[%s]\n", section);
        }
        char name[160], bounds[96] = "", lo[32], hi[32];
        snprintf(name, sizeof name, "%s.%s", k->section, k->key);
        if (k->has_min) format_bound(k->min, lo, sizeof lo);
        if (k->has_max) format_bound(k->max, hi, sizeof hi);
        if (k->has_min && k->has_max)
            snprintf(bounds, sizeof bounds, " [%s %s, %s %s]", k->min_open ? ">" : ">=", lo,
                     k->max_open ? "<" : "<=", hi);
        else if (k->has_min)
            snprintf(bounds, sizeof bounds, " [%s %s]", k->min_open ? ">" : ">=", lo);
        else if (k->has_max)
            snprintf(bounds, sizeof bounds, " [%s %s]", k->max_open ? "<" : "<=", hi);
        fprintf(f, "  %-*s  %-*s  default: %-*s  %s%s\n", wname, name, wtype, type_name(k), wdef,
                default_text(k), k->help, bounds);
    }
    fprintf(f, "\nRequired (no default):");
    for (size_t i = 0; i < CONFIG_NKEYS; i++)
        if (!config_keys[i].def) fprintf(f, " %s.%s", config_keys[i].section, config_keys[i].key);
    fprintf(f, "\n");
}

void config_write_ini(const pb_config *c, FILE *f) {
    fprintf(f, "; pebble %s: the effective configuration of this run\n", PEBBLE_VERSION);
    const char *section = "";
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const config_key *k = &config_keys[i];
        if (strcmp(section, k->section) != 0) {
            section = k->section;
            fprintf(f, "\n[%s]\n", section);
        }
        char buf[64];
        const char *v = format_value(k, c, buf, sizeof buf);
        fprintf(f, "%s =%s%s\n", k->key, v[0] ? " " : "", v);
    }
}

char *config_ini_text(const pb_config *c) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) pb_die(PB_EXIT_RUNTIME, "out of memory");
    config_write_ini(c, f);
    if (fclose(f) != 0) pb_die(PB_EXIT_RUNTIME, "out of memory");
    return text;
}

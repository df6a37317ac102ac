// config_keys.h: the table of config keys, one row a key (config_keys.c), for config.c's
// parser, checks, help and writer. Adding a key means adding a field to pb_config and a row.
#ifndef PEBBLE_CONFIG_KEYS_H
#define PEBBLE_CONFIG_KEYS_H

#include <stddef.h>

typedef enum {
    CONFIG_INT,     // int
    CONFIG_LONG,    // long
    CONFIG_U64,     // unsigned long long
    CONFIG_DOUBLE,  // double, finite
    CONFIG_BOOL,    // int 0/1; true/false/1/0/yes/no/on/off in text
    CONFIG_STRING,  // char[size], NUL-terminated
} config_type;

typedef struct {
    const char *section, *key;
    config_type type;
    size_t offset;        // of the field in pb_config
    size_t size;          // sizeof the field: a string's capacity, and a check on the type
    const char *def;      // default as text; NULL = required (no default)
    const char *help;
    const char *choices;  // strings: allowed values, "a|b|c" (NULL = any)
    const char *metavar;  // required keys: what to write in the "--set key=..." hint
    int nonempty;         // strings: "" is not a valid value
    // Numbers: bounds, inclusive unless *_open.
    int has_min, has_max, min_open, max_open;
    double min, max;
} config_key;

extern const config_key config_keys[];
extern const size_t config_nkeys;

#endif

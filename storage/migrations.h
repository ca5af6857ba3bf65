/* The schema migrations compiled into every binary (cmake/embed_migrations.cmake
 * turns storage/migrations/NNNN_name.sql into this table, sorted by version). */
#ifndef FLOE_STORAGE_MIGRATIONS_H
#define FLOE_STORAGE_MIGRATIONS_H

struct migration {
    int version;
    const char *name;
    const char *sql;
};

extern const struct migration migrations_all[];
extern const int migrations_count;

#endif

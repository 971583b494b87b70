#include <sqlite3.h>

/* sqlite3_config is variadic, which Swift cannot call. Without this, each connection's page
   cache starts with one bulk allocation of 20 pages (about 87 KB with 4 KiB pages) and writes a
   free-list link into every slot, so all of it is resident whether the connection ever holds
   that many pages or not. Returns SQLITE_MISUSE once SQLite is initialized. */
static inline int pimesh_sqlite3_page_cache_without_bulk(void) {
    return sqlite3_config(SQLITE_CONFIG_PAGECACHE, (void *)0, 0, 0);
}

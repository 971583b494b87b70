#ifndef PIMESH_CLINK_H
#define PIMESH_CLINK_H

#include <stddef.h>
#include <stdint.h>

/// One program header of a loaded object.
struct pimesh_loaded_segment {
    uint32_t type;  /* p_type */
    uint32_t flags; /* p_flags */
    uintptr_t virtual_address;
    uintptr_t file_size;
    uintptr_t memory_size;
};

/// A loaded object as the dynamic loader lists it.
struct pimesh_loaded_object {
    const char *name;  /* the loader's own string: "" for the executable */
    uintptr_t base;    /* the load bias (dlpi_addr) */
    int text_relocations; /* DT_TEXTREL or DF_TEXTREL: its read-only segments were written */
    const struct pimesh_loaded_segment *segments;
    size_t segment_count;
};

typedef void (*pimesh_loaded_object_visitor)(void *context, const struct pimesh_loaded_object *object);

/// Calls `visit` for every object the dynamic loader has loaded, the executable first, while
/// the loader's lock is held (`dl_iterate_phdr`, a GNU extension that Swift's Glibc module
/// does not show): an object cannot be unloaded during its call, so addresses taken from it
/// stay valid there. `visit` must not load or unload objects. Returns 0, or -1 when memory for
/// an object's headers ran out (the object is then skipped).
int pimesh_visit_loaded_objects(pimesh_loaded_object_visitor visit, void *context);

#endif

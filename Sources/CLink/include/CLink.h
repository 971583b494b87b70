#ifndef PIMESH_CLINK_H
#define PIMESH_CLINK_H

#include <stddef.h>
#include <stdint.h>

/// One program header of a loaded object, with where the object sits.
struct pimesh_loaded_segment {
    size_t object;           /* the object's place in the loader's list, from 0 */
    uintptr_t base;          /* the object's load bias (dlpi_addr) */
    const char *object_name; /* the loader's own string: "" for the executable */
    uint32_t type;           /* p_type */
    uint32_t flags;          /* p_flags */
    uintptr_t virtual_address;
    uintptr_t file_size;
    uintptr_t memory_size;
};

/// Fills `segments` with the program headers of every object the dynamic loader has loaded,
/// the executable first, up to `capacity`. Returns how many there are, which may be more than
/// `capacity`: call again with room for them. `dl_iterate_phdr` is a GNU extension that
/// Swift's Glibc module does not show.
size_t pimesh_loaded_segments(struct pimesh_loaded_segment *segments, size_t capacity);

#endif

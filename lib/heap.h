/* heap.h — malloc settings for processes that build and drop many small
 * JSON trees (the API server, the node agent).
 *
 * Call heap_tune once at the start of main, before threads exist. It
 * changes process-wide allocator settings only; nothing to free. */
#ifndef CAPSTAN_HEAP_H
#define CAPSTAN_HEAP_H

void heap_tune(void);

#endif

/* The public WDK declarations (wdk_types.h), laid out by clang for x86_64-pc-windows-msvc: its record
 * layout must equal pytriage's built-in layouts, whose _NET_BUFFER_LIST has 27 info slots (a newer
 * NDIS than the enum's 6.x names). */
#define NBL_INFO_COUNT 27
#include "wdk_types.h"

/* Referenced so that every record is laid out. */
LIST_ENTRY g_list; SINGLE_LIST_ENTRY g_single; MDL g_mdl; POOL_HEADER g_pool;
NET_BUFFER g_nb; NET_BUFFER_LIST g_nbl; NET_BUFFER_LIST_CONTEXT g_ctx;

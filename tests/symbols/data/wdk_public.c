/* Public WDK declarations (wdm.h, ndis/nbl.h), transcribed by hand for the layout test: clang compiles
 * them for x86_64-pc-windows-msvc and its record layout must equal pytriage's built-in layouts. */
typedef unsigned char UCHAR;
typedef short CSHORT;
typedef unsigned short USHORT;
typedef unsigned long ULONG;
typedef long LONG;
typedef unsigned long long ULONG64, SIZE_T;
typedef long long LONGLONG;
typedef void *PVOID, *NDIS_HANDLE;
typedef LONG NDIS_STATUS;
typedef union _LARGE_INTEGER { LONGLONG QuadPart; } PHYSICAL_ADDRESS, NDIS_PHYSICAL_ADDRESS;

typedef struct _LIST_ENTRY { struct _LIST_ENTRY *Flink; struct _LIST_ENTRY *Blink; } LIST_ENTRY;
typedef struct _SINGLE_LIST_ENTRY { struct _SINGLE_LIST_ENTRY *Next; } SINGLE_LIST_ENTRY;
typedef union __declspec(align(16)) _SLIST_HEADER {
    struct { ULONG64 Alignment; ULONG64 Region; };
    struct { ULONG64 Depth : 16; ULONG64 Sequence : 48; ULONG64 Reserved : 4; ULONG64 NextEntry : 60; } HeaderX64;
} SLIST_HEADER;

struct _EPROCESS;
typedef struct _MDL {
    struct _MDL *Next;
    CSHORT Size;
    CSHORT MdlFlags;
    USHORT AllocationProcessorNumber;
    USHORT Reserved;
    struct _EPROCESS *Process;
    PVOID MappedSystemVa;
    PVOID StartVa;
    ULONG ByteCount;
    ULONG ByteOffset;
} MDL, *PMDL;

typedef struct _POOL_HEADER {
    union {
        struct {
            USHORT PreviousSize : 8;
            USHORT PoolIndex : 8;
            USHORT BlockSize : 8;
            USHORT PoolType : 8;
        };
        ULONG Ulong1;
    };
    ULONG PoolTag;
    union {
        struct _EPROCESS *ProcessBilled;
        struct { USHORT AllocatorBackTraceIndex; USHORT PoolTagHash; };
    };
} POOL_HEADER;

typedef struct _NET_BUFFER NET_BUFFER, *PNET_BUFFER;
typedef struct _NET_BUFFER_LIST NET_BUFFER_LIST, *PNET_BUFFER_LIST;
typedef struct _NET_BUFFER_LIST_CONTEXT NET_BUFFER_LIST_CONTEXT, *PNET_BUFFER_LIST_CONTEXT;

typedef union _NET_BUFFER_DATA_LENGTH { ULONG DataLength; SIZE_T stDataLength; } NET_BUFFER_DATA_LENGTH;
typedef struct _NET_BUFFER_DATA {
    PNET_BUFFER Next;
    PMDL CurrentMdl;
    ULONG CurrentMdlOffset;
    NET_BUFFER_DATA_LENGTH NbDataLength;
    PMDL MdlChain;
    ULONG DataOffset;
} NET_BUFFER_DATA;
typedef union _NET_BUFFER_HEADER { NET_BUFFER_DATA NetBufferData; SLIST_HEADER Link; } NET_BUFFER_HEADER;

struct _NET_BUFFER {
    union {
        struct {
            PNET_BUFFER Next;
            PMDL CurrentMdl;
            ULONG CurrentMdlOffset;
            union { ULONG DataLength; SIZE_T stDataLength; };
            PMDL MdlChain;
            ULONG DataOffset;
        };
        SLIST_HEADER Link;
        NET_BUFFER_HEADER NetBufferHeader;
    };
    USHORT ChecksumBias;
    USHORT Reserved;
    NDIS_HANDLE NdisPoolHandle;
    __declspec(align(16)) PVOID NdisReserved[2];
    __declspec(align(16)) PVOID ProtocolReserved[6];
    __declspec(align(16)) PVOID MiniportReserved[4];
    NDIS_PHYSICAL_ADDRESS DataPhysicalAddress;
    union { PVOID SharedMemoryInfo; PVOID ScatterGatherList; };
};

struct _NET_BUFFER_LIST_CONTEXT {
    PNET_BUFFER_LIST_CONTEXT Next;
    USHORT Size;
    USHORT Offset;
    __declspec(align(16)) UCHAR ContextData[];
};

#define MaxNetBufferListInfo 27
typedef struct _NET_BUFFER_LIST_HEADER { PNET_BUFFER_LIST Next; PNET_BUFFER FirstNetBuffer; } NET_BUFFER_LIST_DATA;
struct _NET_BUFFER_LIST {
    union {
        struct { PNET_BUFFER_LIST Next; PNET_BUFFER FirstNetBuffer; };
        SLIST_HEADER Link;
        NET_BUFFER_LIST_DATA NetBufferListHeader;
    };
    PNET_BUFFER_LIST_CONTEXT Context;
    PNET_BUFFER_LIST ParentNetBufferList;
    NDIS_HANDLE NdisPoolHandle;
    __declspec(align(16)) PVOID NdisReserved[2];
    __declspec(align(16)) PVOID ProtocolReserved[4];
    __declspec(align(16)) PVOID MiniportReserved[2];
    PVOID Scratch;
    NDIS_HANDLE SourceHandle;
    ULONG NblFlags;
    LONG ChildRefCount;
    ULONG Flags;
    union { NDIS_STATUS Status; ULONG NdisReserved2; };
    PVOID NetBufferListInfo[MaxNetBufferListInfo];
};

/* Referenced so that every record is laid out (and lands in a PDB when linked). */
LIST_ENTRY g_list; SINGLE_LIST_ENTRY g_single; MDL g_mdl; POOL_HEADER g_pool;
NET_BUFFER g_nb; NET_BUFFER_LIST g_nbl; NET_BUFFER_LIST_CONTEXT g_ctx;

/* Legacy SEC("maps") definitions; MAPDEF_WORDS (4..7) picks the struct size. */
#ifndef MAPDEF_WORDS
#define MAPDEF_WORDS 5
#endif
#define SEC(n) __attribute__((section(n), used))

struct bpf_map_def {
	unsigned int type, key_size, value_size, max_entries;
#if MAPDEF_WORDS > 4
	unsigned int map_flags;
#endif
#if MAPDEF_WORDS > 5
	unsigned int inner_map_idx;
#endif
#if MAPDEF_WORDS > 6
	unsigned int numa_node;
#endif
};

struct bpf_map_def SEC("maps") counters = { .type = 2, .key_size = 4, .value_size = 8, .max_entries = 16 };
struct bpf_map_def SEC("maps") table = { .type = 1, .key_size = 8, .value_size = 4, .max_entries = 1024,
#if MAPDEF_WORDS > 4
	.map_flags = 1,
#endif
};
#if MAPDEF_WORDS > 5
struct bpf_map_def SEC("maps") outer = { .type = 12, .key_size = 4, .value_size = 4, .max_entries = 2,
	.inner_map_idx = 0,
#if MAPDEF_WORDS > 6
	.numa_node = 0,
#endif
};
#endif

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;

SEC("socket") int count(void *ctx)
{
	unsigned int k = 0;
	unsigned long *v = bpf_map_lookup_elem(&counters, &k);
	if (v)
		*v += 1;
	unsigned long k2 = 7;
	unsigned int *w = bpf_map_lookup_elem(&table, &k2);
	return w ? *w : 0;
}

char _license[] SEC("license") = "GPL";
unsigned int _version SEC("version") = 0x050a00;

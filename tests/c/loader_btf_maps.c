/* BTF-defined maps in SEC(".maps"): every attribute the reader understands. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct pair { __u32 a; __u64 b; };

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct pair);
	__uint(max_entries, 128);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pinned_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(key_size, 4);
	__uint(value_size, 16);
	__uint(max_entries, 8);
} sized_array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, int);
	__type(value, long);
	__uint(max_entries, 4);
	__uint(numa_node, 0);
} percpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct inner_def {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
};
struct inner_def inner_a SEC(".maps"), inner_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 3);
	__type(key, __u32);
	__array(values, struct inner_def);
} outer SEC(".maps") = {
	.values = { [0] = &inner_a, [2] = &inner_b },
};

int tail_target(struct __sk_buff *skb);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, int (void *));
} jumps SEC(".maps") = {
	.values = { [1] = (void *)&tail_target },
};

SEC("socket") int tail_target(struct __sk_buff *skb) { return 1; }

SEC("socket") int use_maps(struct __sk_buff *skb)
{
	__u32 k = 0;
	struct pair *p = bpf_map_lookup_elem(&pinned_hash, &k);
	if (p)
		p->b += 1;
	void *a = bpf_map_lookup_elem(&sized_array, &k);
	if (a)
		*(__u64 *)a = 3;
	long *c = bpf_map_lookup_elem(&percpu, &k);
	if (c)
		*c += 1;
	void *in = bpf_map_lookup_elem(&outer, &k);
	if (in) {
		__u64 *v = bpf_map_lookup_elem(in, &k);
		if (v)
			*v += 1;
	}
	bpf_tail_call(skb, &jumps, 1);
	return 0;
}

char _license[] SEC("license") = "Dual BSD/GPL";

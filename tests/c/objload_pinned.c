/* pybpf.load(): LIBBPF_PIN_BY_NAME maps, global data and a map-in-map whose slots the
 * object fills.  (The program does not look into the inner maps: pybpf's verifier does
 * not yet type a map-in-map lookup result as a map pointer.) */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shared_counts SEC(".maps");

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
};

struct inner first SEC(".maps"), second SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps") = {
	.values = { (void *)&first, (void *)&second },
};

__u64 runs = 1000;
const volatile __u32 step = 7;
__u32 last_len;

SEC("socket")
int count(struct __sk_buff *skb)
{
	__u32 key = skb->len & 63;
	__u64 init = 1, *v;

	v = bpf_map_lookup_elem(&shared_counts, &key);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&shared_counts, &key, &init, BPF_NOEXIST);
	runs += step;
	last_len = skb->len;
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

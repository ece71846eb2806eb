/* Global variables (.data/.bss/.rodata maps), a tail call, a switch, a string loop. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} jump SEC(".maps");

__u64 packets = 0;
__u32 last_len;
const volatile __u32 limit = 1500;
char greeting[16] = "hello, world";

static __attribute__((noinline)) int classify(__u32 len)
{
	switch (len & 7) {
	case 0: return 10;
	case 1: return 20;
	case 2: return 30;
	case 5: return 40;
	default: return 0;
	}
}

SEC("socket")
int globals(struct __sk_buff *skb)
{
	packets++;
	last_len = skb->len;
	if (skb->len > limit)
		bpf_tail_call(skb, &jump, 0);
	int n = 0;
#pragma clang loop unroll(disable)
	for (int i = 0; i < sizeof(greeting); i++) {
		if (!greeting[i])
			break;
		n += greeting[i] == 'l';
	}
	return classify(skb->len) + n;
}

SEC("socket")
int index_array(struct __sk_buff *skb)
{
	__u32 table[16] = {};
	__u32 i = skb->len & 15;
	table[i] = skb->protocol;
	__u32 j = skb->mark;
	if (j >= 16)
		return 0;
	return table[j];
}

char LICENSE[] SEC("license") = "GPL";

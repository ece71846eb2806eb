/* sockex3: the sockex2 flow dissector split into stages joined by tail calls.
 *
 * Each parsing stage is its own program; they hand the packet on through
 * bpf_tail_call() into the slots of a PROG_ARRAY that the object file fills
 * itself (the map's .values name the programs, and pybpf.load puts them in
 * once they are loaded).  Between stages the partial flow key lives in a
 * one-slot per-CPU array, since a tail call keeps no stack.  Header fields
 * are read with the classic LD_ABS/LD_IND instructions, which convert from
 * network order themselves.  The flows map ends up as sockex2's.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "../sockex2/flow.h"

enum stage { PARSE_VLAN = 1, PARSE_IPV4, PARSE_IPV6, PARSE_PORTS, COUNT };

struct state {
	struct flow_key key;
	__u32 off;		/* where the next header starts */
	__u32 l2proto;
};

unsigned long long load_byte(void *skb, unsigned long long off) asm("llvm.bpf.load.byte");
unsigned long long load_half(void *skb, unsigned long long off) asm("llvm.bpf.load.half");
unsigned long long load_word(void *skb, unsigned long long off) asm("llvm.bpf.load.word");

int parse_vlan(struct __sk_buff *skb);
int parse_ipv4(struct __sk_buff *skb);
int parse_ipv6(struct __sk_buff *skb);
int parse_ports(struct __sk_buff *skb);
int count(struct __sk_buff *skb);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 8);
	__uint(key_size, sizeof(__u32));
	__array(values, int (void *));
} stages SEC(".maps") = {
	.values = {
		[PARSE_VLAN] = (void *)&parse_vlan,
		[PARSE_IPV4] = (void *)&parse_ipv4,
		[PARSE_IPV6] = (void *)&parse_ipv6,
		[PARSE_PORTS] = (void *)&parse_ports,
		[COUNT] = (void *)&count,
	},
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct state);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct flow_key);
	__type(value, struct flow_stats);
} flows SEC(".maps");

static __always_inline struct state *state(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&scratch, &zero);
}

/* Moves on to the stage for an ethertype; returning means there is none. */
static __always_inline void by_ethertype(struct __sk_buff *skb, __u32 proto)
{
	if (proto == ETH_P_IP)
		bpf_tail_call(skb, &stages, PARSE_IPV4);
	else if (proto == ETH_P_IPV6)
		bpf_tail_call(skb, &stages, PARSE_IPV6);
}

SEC("socket")
int dissect(struct __sk_buff *skb)
{
	struct state *s = state();
	__u32 proto = bpf_ntohs(skb->protocol);

	if (!s)
		return 0;
	__builtin_memset(s, 0, sizeof(*s));
	s->l2proto = proto;
	if (proto == ETH_P_8021Q || proto == ETH_P_8021AD)
		bpf_tail_call(skb, &stages, PARSE_VLAN);
	by_ethertype(skb, proto);
	return 0;
}

SEC("socket")
int parse_vlan(struct __sk_buff *skb)
{
	struct state *s = state();

	if (!s)
		return 0;
	s->off = 4;
	by_ethertype(skb, load_half(skb, 2));
	return 0;
}

SEC("socket")
int parse_ipv4(struct __sk_buff *skb)
{
	struct state *s = state();
	__u32 off, ihl, i;

	if (!s)
		return 0;
	off = s->off;
	ihl = load_byte(skb, off) & 0xf;
	if (ihl < 5)
		return 0;
	s->key.src[10] = s->key.src[11] = 0xff;
	s->key.dst[10] = s->key.dst[11] = 0xff;
	for (i = 0; i < 4; i++) {
		s->key.src[12 + i] = load_byte(skb, off + 12 + i);
		s->key.dst[12 + i] = load_byte(skb, off + 16 + i);
	}
	s->key.proto = load_byte(skb, off + 9);
	s->off = off + ihl * 4;
	if (load_half(skb, off + 6) & 0x1fff)
		bpf_tail_call(skb, &stages, COUNT);
	bpf_tail_call(skb, &stages, PARSE_PORTS);
	return 0;
}

SEC("socket")
int parse_ipv6(struct __sk_buff *skb)
{
	struct state *s = state();
	__u32 off, i;

	if (!s)
		return 0;
	off = s->off;
	for (i = 0; i < 4; i++) {
		__u32 w = bpf_htonl(load_word(skb, off + 8 + 4 * i));
		__u32 d = bpf_htonl(load_word(skb, off + 24 + 4 * i));

		__builtin_memcpy(&s->key.src[4 * i], &w, 4);
		__builtin_memcpy(&s->key.dst[4 * i], &d, 4);
	}
	s->key.proto = load_byte(skb, off + 6);
	s->off = off + 40;
	if (s->key.proto == IPPROTO_FRAGMENT_HDR) {
		s->key.proto = load_byte(skb, off + 40);
		s->off = off + 48;
		if (load_half(skb, off + 42) & 0xfff8)
			bpf_tail_call(skb, &stages, COUNT);
	}
	bpf_tail_call(skb, &stages, PARSE_PORTS);
	return 0;
}

SEC("socket")
int parse_ports(struct __sk_buff *skb)
{
	struct state *s = state();

	if (!s)
		return 0;
	switch (s->key.proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
		s->key.sport = load_half(skb, s->off);
		s->key.dport = load_half(skb, s->off + 2);
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		s->key.sport = load_byte(skb, s->off);
		s->key.dport = load_byte(skb, s->off + 1);
		break;
	}
	bpf_tail_call(skb, &stages, COUNT);
	return 0;
}

SEC("socket")
int count(struct __sk_buff *skb)
{
	struct state *s = state();
	struct flow_key key;
	struct flow_stats *st;

	if (!s)
		return 0;
	key = s->key;
	st = bpf_map_lookup_elem(&flows, &key);
	if (st) {
		__sync_fetch_and_add(&st->packets, 1);
		__sync_fetch_and_add(&st->bytes, skb->len);
	} else {
		struct flow_stats first = { .packets = 1, .bytes = skb->len };

		bpf_map_update_elem(&flows, &key, &first, BPF_NOEXIST);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";

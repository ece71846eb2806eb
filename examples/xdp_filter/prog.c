/* xdp_filter: drop traffic from blocked prefixes, answer pings, count verdicts.
 *
 * For each frame (with at most one VLAN tag) the program looks the IPv4 or
 * IPv6 source address up in an LPM trie of blocked prefixes; a match is
 * dropped and counted against that prefix.  ICMP echo requests are turned
 * into echo replies in place (MACs and addresses swapped, type and
 * checksum updated) and sent back with XDP_TX, when the read-only switch
 * answer_pings (set at build time, in .rodata) says so.  Everything else
 * passes.  Per-verdict counters are a global array (in .bss).
 */
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct prefix {
	__u32 prefixlen;	/* of the 128-bit address: IPv4 is ::ffff:a.b.c.d, so 96 + len */
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct prefix);
	__type(value, __u64);
} blocked SEC(".maps");

const volatile bool answer_pings = true;
__u64 verdicts[XDP_REDIRECT + 1];

/* linux/icmp.h pulls in the C library's headers, which a BPF target lacks. */
#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8

struct icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 id;
	__be16 sequence;
};

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

/* RFC 1624: the checksum after a 16-bit word of the summed data changed. */
static __always_inline __u16 csum_replace(__u16 check, __u16 old, __u16 new)
{
	__u32 sum = (__u16)~check + (__u16)~old + (__u32)new;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

static __always_inline int is_blocked(struct prefix *p)
{
	__u64 *hits = bpf_map_lookup_elem(&blocked, p);

	if (!hits)
		return 0;
	__sync_fetch_and_add(hits, 1);
	return 1;
}

static __always_inline int pong(struct ethhdr *eth, struct iphdr *ip, struct icmphdr *icmp)
{
	__u8 mac[ETH_ALEN];
	__be32 a = ip->saddr;
	__u16 old = *(__u16 *)icmp;

	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
	ip->saddr = ip->daddr;
	ip->daddr = a;
	icmp->type = ICMP_ECHOREPLY;
	icmp->checksum = csum_replace(icmp->checksum, old, *(__u16 *)icmp);
	return XDP_TX;
}

static __always_inline int filter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct prefix p = {};
	void *l3;
	__u16 proto;

	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	l3 = eth + 1;
	proto = bpf_ntohs(eth->h_proto);
	if (proto == ETH_P_8021Q || proto == ETH_P_8021AD) {
		struct vlan_hdr *vh = l3;

		if ((void *)(vh + 1) > end)
			return XDP_DROP;
		proto = bpf_ntohs(vh->proto);
		l3 = vh + 1;
	}
	if (proto == ETH_P_IP) {
		struct iphdr *ip = l3;
		struct icmphdr *icmp;

		if ((void *)(ip + 1) > end)
			return XDP_DROP;
		p.prefixlen = 128;
		p.addr[10] = p.addr[11] = 0xff;
		__builtin_memcpy(&p.addr[12], &ip->saddr, 4);
		if (is_blocked(&p))
			return XDP_DROP;
		if (!answer_pings || ip->protocol != IPPROTO_ICMP || ip->ihl != 5 ||
		    ip->frag_off & bpf_htons(0x3fff))
			return XDP_PASS;
		icmp = (void *)(ip + 1);
		if ((void *)(icmp + 1) > end || icmp->type != ICMP_ECHO)
			return XDP_PASS;
		return pong(eth, ip, icmp);
	}
	if (proto == ETH_P_IPV6) {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > end)
			return XDP_DROP;
		p.prefixlen = 128;
		__builtin_memcpy(p.addr, &ip6->saddr, 16);
		if (is_blocked(&p))
			return XDP_DROP;
	}
	return XDP_PASS;
}

SEC("xdp")
int xdp_filter(struct xdp_md *ctx)
{
	int verdict = filter(ctx);

	__sync_fetch_and_add(&verdicts[verdict], 1);
	return verdict;
}

char LICENSE[] SEC("license") = "GPL";

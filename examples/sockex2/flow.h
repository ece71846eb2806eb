/* The flow key and counters shared by sockex2 and sockex3. */
#ifndef EXAMPLES_FLOW_H
#define EXAMPLES_FLOW_H

#include <linux/types.h>

/* Addresses are 16 bytes: IPv6 as is, IPv4 as ::ffff:a.b.c.d.  Ports are in
 * host order; ICMP and ICMPv6 put their type and code there instead, and
 * fragments after the first (which carry no ports) leave them 0. */
struct flow_key {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct flow_stats {
	__u64 packets;
	__u64 bytes;
};

#define IPPROTO_FRAGMENT_HDR 44

#endif

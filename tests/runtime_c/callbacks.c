/* bpf_loop and bpf_for_each_map_elem, for the kernel differential of the runtime. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct { __uint(type, BPF_MAP_TYPE_ARRAY); __type(key, __u32); __type(value, __u64); __uint(max_entries, 8); } arr SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __type(key, __u32); __type(value, __u64); __uint(max_entries, 8); } hsh SEC(".maps");

struct acc { __u64 sum; __u32 stop; };

static long step(__u32 i, void *c)
{
    struct acc *a = c;
    a->sum += i * 3;
    return i == a->stop;
}

static long visit(void *map, __u32 *key, __u64 *val, void *c)
{
    struct acc *a = c;
    *val += *key + 1;
    a->sum += *val;
    return *key == 5;
}

SEC("xdp")
int callbacks(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct acc a = { 0, 20 };
    if (data + 1 <= end)
        a.stop = *(__u8 *)data;
    long n = bpf_loop(100, step, &a, 0);
    __u32 k = a.stop & 7;
    __u64 one = 1;
    bpf_map_update_elem(&hsh, &k, &one, BPF_ANY);
    long m = bpf_for_each_map_elem(&arr, visit, &a, 0);
    long h = bpf_for_each_map_elem(&hsh, visit, &a, 0);
    return (__u32)(a.sum + n * 1000 + m * 100000 + h * 1000000);
}

char _license[] SEC("license") = "GPL";

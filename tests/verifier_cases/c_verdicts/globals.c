/* Global (non-static) functions: Linux verifies each once, on its own, for any arguments its
 * BTF prototype allows; callers only check their arguments against the prototype.
 * The expected verdict of each program is in tests/test_verifier_globals.py. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define __arg_nonnull __attribute__((btf_decl_tag("arg:nonnull")))
#define __arg_ctx __attribute__((btf_decl_tag("arg:ctx")))

struct pair { __u32 a, b; };
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __type(key, __u32); __type(value, struct pair); __uint(max_entries, 4); } arr SEC(".maps");

__noinline int classify(__u32 len) { return len > 1000 ? 2 : len > 100; }
__noinline int sum_pair(struct pair *p) { return p ? p->a + p->b : 0; }
__noinline int first_unchecked(struct pair *p) { return p->a; }
__noinline int first_nonnull(struct pair *p __arg_nonnull) { return p->a; }
__noinline void store(struct pair *p, __u32 v) { if (p) p->a = v; }
__noinline int any_ptr(void *p) { return p != 0; }
__noinline int xdp_len(struct xdp_md *ctx) { return ctx->data_end - ctx->data; }
__noinline int tagged_ctx(void *ctx __arg_ctx) { return ((struct xdp_md *)ctx)->data_end != 0; }
__noinline int skb_len(struct __sk_buff *skb) { return skb->len; }
__noinline int read8(__u64 *p) { return p ? (int)p[0] : 0; }
__noinline int nested(struct pair *p) { return sum_pair(p) + classify(p ? p->b : 0); }
__noinline int grow(struct xdp_md *ctx) { return bpf_xdp_adjust_head(ctx, -4); }
__noinline int *ret_ptr(int *p) { return p; }
__noinline int ret_stack_ptr_as_int(int x) { int y = x; return (long)&y; }

SEC("xdp") int scalar_arg(struct xdp_md *ctx) { return classify(ctx->data_end - ctx->data); }
SEC("xdp") int stack_and_map_value(struct xdp_md *ctx)
{
    struct pair local = { 1, 2 };
    __u32 k = 0;
    struct pair *v = bpf_map_lookup_elem(&arr, &k);
    return sum_pair(&local) + sum_pair(v);
}
SEC("xdp") int map_value_or_null(struct xdp_md *ctx)
{
    __u32 k = ctx->rx_queue_index;
    return sum_pair(bpf_map_lookup_elem(&arr, &k));
}
SEC("xdp") int callee_misses_null_check(struct xdp_md *ctx) { struct pair l = { 1, 2 }; return first_unchecked(&l); }
SEC("xdp") int nonnull_tag(struct xdp_md *ctx) { struct pair l = { 1, 2 }; return first_nonnull(&l); }
SEC("xdp") int nonnull_tag_gets_maybe_null(struct xdp_md *ctx)
{
    __u32 k = ctx->rx_queue_index;
    return first_nonnull(bpf_map_lookup_elem(&arr, &k));
}
SEC("xdp") int void_return(struct xdp_md *ctx) { struct pair l = { 1, 2 }; store(&l, 3); return l.a; }
SEC("xdp") int void_pointer_arg(struct xdp_md *ctx) { __u64 x = 1; return any_ptr(&x); }
SEC("xdp") int ctx_arg(struct xdp_md *ctx) { return xdp_len(ctx); }
SEC("xdp") int ctx_tag(struct xdp_md *ctx) { return tagged_ctx(ctx); }
SEC("xdp") int wrong_ctx_type(struct xdp_md *ctx) { return skb_len((void *)ctx); }
SEC("socket") int skb_ctx(struct __sk_buff *skb) { return skb_len(skb); }
SEC("xdp") int packet_arg(struct xdp_md *ctx)
{
    void *d = (void *)(long)ctx->data, *e = (void *)(long)ctx->data_end;
    if (d + 8 > e) return 0;
    return read8(d);
}
SEC("xdp") int packet_arg_too_short(struct xdp_md *ctx)
{
    void *d = (void *)(long)ctx->data, *e = (void *)(long)ctx->data_end;
    if (d + 4 > e) return 0;
    return read8(d);
}
SEC("xdp") int scalar_for_pointer(struct xdp_md *ctx) { return read8((__u64 *)(long)ctx->rx_queue_index); }
SEC("xdp") int global_calls_global(struct xdp_md *ctx) { struct pair l = { 7, 9 }; return nested(&l); }
SEC("xdp") int packet_changed_by_callee(struct xdp_md *ctx)
{
    void *d = (void *)(long)ctx->data, *e = (void *)(long)ctx->data_end;
    if (d + 1 > e) return 0;
    grow(ctx);
    return *(__u8 *)d;
}
SEC("xdp") int pointer_return(struct xdp_md *ctx) { int x = 1; return *ret_ptr(&x); }
SEC("xdp") int result_is_unknown(struct xdp_md *ctx)
{
    __u8 buf[4] = {};
    return buf[classify(ctx->data_end - ctx->data)];
}
SEC("socket") int stack_address_returned(struct __sk_buff *skb) { return ret_stack_ptr_as_int(skb->len); }
char _license[] SEC("license") = "GPL";

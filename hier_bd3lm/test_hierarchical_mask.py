"""The fork's mask checks (Q=64, P=64, E=128, L'=16 and three more shapes), plus brute-force equality; saves a
heat map (to a path you choose, not the fork's hard-coded /workspace path).

python test_hierarchical_mask.py [--output_plot hierarchical_mask.png] [--exec_sees_noisy_plan]
"""

import argparse
import sys

from shared_utils.errors import UserError, cli_main


def check(Q, P, E, bs, fork_variant=False):
    import torch

    from hier_bd3lm.masks import brute_force_hierarchical_mask, create_hierarchical_mask

    m = create_hierarchical_mask(Q + P + E, bs, Q, P, E, "sdpa", fork_variant)
    n = Q + 2 * P + 2 * E
    assert m.shape == (n, n), m.shape
    q, plan, ex = slice(0, Q), slice(Q, Q + 2 * P), slice(Q + 2 * P, n)
    assert m[q, q].all(), "(1) question x question must be all true"
    assert not m[plan, ex].any(), "(2) no plan row may see an execution column"
    assert m[plan, q].all(), "(3) every plan row sees every question column"
    assert m[ex, q].all(), "(4) every execution row sees every question column"
    assert m[ex, plan].any(dim=1).all(), "(5) every execution row sees some plan column"
    pxt = m[Q:Q + P, Q:Q + P]
    for b in range(0, P, bs):
        assert pxt[b:b + bs, b:b + bs].all(), "(6) plan_xt diagonal blocks must be all true"
    if n <= 1000:  # the loop reference takes seconds beyond that
        assert torch.equal(m, brute_force_hierarchical_mask(Q, P, E, bs, fork_variant)), "brute-force mismatch"
    return m


@cli_main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output_plot", default=None, help="heat map PNG (default: none)")
    p.add_argument("--exec_sees_noisy_plan", action="store_true", help="the fork's rule 7 variant")
    args = p.parse_args(argv)
    if args.output_plot:
        from hier_bd3lm.guards import check_output_path

        if check_output_path(args.output_plot, "--output_plot").is_dir():
            raise UserError(f"--output_plot {args.output_plot} is a directory, not a file")
    shapes = [(64, 64, 128, 16), (128, 128, 256, 8), (256, 256, 512, 16), (64, 192, 256, 32)]
    for Q, P, E, bs in shapes:
        check(Q, P, E, bs, args.exec_sees_noisy_plan)
        print(f"ok  Q={Q} P={P} E={E} block={bs}  mask {Q + 2 * P + 2 * E}x{Q + 2 * P + 2 * E}")
    if args.output_plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        Q, P, E, bs = shapes[0]
        m = check(Q, P, E, bs, args.exec_sees_noisy_plan)
        fig, ax = plt.subplots(figsize=(8, 8))
        ax.imshow(m.numpy(), cmap="Blues", interpolation="nearest")
        for x in (Q, Q + P, Q + 2 * P, Q + 2 * P + E):
            ax.axhline(x - 0.5, color="red", lw=0.8)
            ax.axvline(x - 0.5, color="red", lw=0.8)
        ax.set(title="[Q | P_xt | P_x0 | E_xt | E_x0] attention (rows: queries)", xlabel="key", ylabel="query")
        fig.savefig(args.output_plot, dpi=120)
        print(f"saved {args.output_plot}")
    print("all mask checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

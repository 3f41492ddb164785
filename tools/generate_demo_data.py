"""Generate the small Cityscapes-format street-scene dataset used by the demo and tests."""
import argparse

from mdeq_mm.datasets import generate_cityscapes_like


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--out-dir', default='data/mdeq_demo_cityscapes')
    parser.add_argument('--num-train', type=int, default=24)
    parser.add_argument('--num-val', type=int, default=8)
    parser.add_argument('--height', type=int, default=128)
    parser.add_argument('--width', type=int, default=256)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    out = generate_cityscapes_like(args.out_dir, args.num_train, args.num_val,
                                   args.height, args.width, args.seed)
    print(f'wrote {args.num_train} train and {args.num_val} val scenes to {out}')


if __name__ == '__main__':
    main()

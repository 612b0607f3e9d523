"""``xai demo``: the shipped model on the shipped sample images, with its audit."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="explain the shipped CNN (Grad-CAM + SmoothGrad) and ViT (Grad-CAM on tokens, "
        "attention rollout, generic attention) on the shipped sample images",
        epilog="example:\n  xai demo --out xai-demo\n\nexit status: 0 success, 2 usage error "
        "(a bad --images or --model)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="xai-demo", help="output folder (default: xai-demo)")
    p.add_argument(
        "--images", default=None, help="a save_image_folder folder (default: the shipped sample)"
    )
    p.add_argument("--model", default=None, help="a .keras model (default: the shipped shapes CNN)")
    p.add_argument("--grid-rows", type=int, default=12, help="images shown in grid.png")
    p.add_argument(
        "--no-audit", action="store_true", help="skip the audit report (audit/report.html)"
    )
    p.add_argument("--no-vit", action="store_true", help="skip the Vision Transformer (vit/)")


def run(args: Any) -> int:
    from ..demo import run_demo

    manifest = run_demo(
        args.out,
        images=args.images,
        model_path=args.model,
        grid_rows=args.grid_rows,
        audit=not getattr(args, "no_audit", False),
        vit=not getattr(args, "no_vit", False),
    )
    out = Path(args.out)
    print(f"xai demo: {manifest['num_images']} images from {manifest['images']}")
    print(
        f"  model {manifest['model']} (layer {', '.join(manifest['layer'])}), "
        f"accuracy {manifest['accuracy']:.2f}"
    )
    pg, px = manifest["pointing_game"], manifest["pointing_game_exact_pixel"]
    cell = manifest["pointing_game_tolerance_px"]
    print(
        f"  pointing game (map maximum within {cell} px = one feature-map cell of the object, as "
        f"in the audit): Grad-CAM {pg['gradcam']:.0%}, SmoothGrad {pg['smoothgrad']:.0%} "
        f"(exact pixel: {px['gradcam']:.0%}, {px['smoothgrad']:.0%})"
    )
    n_overlays = sum(1 for f in manifest["files"] if f.startswith("overlays/"))
    print(f"  wrote {n_overlays} overlays under {out / 'overlays'}/")
    print(f"  wrote {out / 'grid.png'} (image | Grad-CAM | SmoothGrad)")
    vit = manifest.get("vit")
    if vit is not None:
        vpg = vit["pointing_game"]
        print(
            f"  ViT {vit['model']}: accuracy {vit['accuracy']:.2f}; pointing game Grad-CAM on "
            f"tokens {vpg['gradcam']:.0%}, attention rollout {vpg['attention_rollout']:.0%}, "
            f"generic attention {vpg['generic_attention']:.0%}"
        )
        print(f"  wrote {out / 'vit' / 'grid.png'} and the ViT overlays under {out / 'vit'}/")
    if manifest["audit_flags"] is not None:
        raised = "; ".join(manifest["audit_flags"]) or "no flags raised"
        print(f"  wrote {out / 'audit' / 'report.html'} (audit: {raised})")
    text = manifest.get("text")
    if text:
        print(
            f"  wrote {out / 'text' / 'tokens.html'} (text model, integrated gradients at the "
            f"embedding: top token = deciding word in {text['top_token_is_deciding_word']:.0%})"
        )
    print(f"  wrote {out / 'manifest.json'}")
    print(f"  done in {manifest['seconds']:.1f} s")
    return 0

"""Pretrained face networks (detector, 68 landmarks, 128-d descriptor, expression classifier), ported to torch.

Weights: the TF.js models of the npm package `@vladmandic/face-api` (MIT), converted once to safetensors
(`weights/`, see `weights/NOTICE.md`). They ship inside the package: nothing downloads at run time.
"""

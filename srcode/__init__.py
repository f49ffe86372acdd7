"""SRCode: SFT, then PPO with token-level rewards from vul2safe's evaluator registry.

Heavy libraries (torch, transformers, trl) are imported only inside the commands that train.
"""

__version__ = "0.1.0"

"""A small PyTorch training run that shows what a jobd GPU job does: it trains on the GPU jobd
gave it (CUDA_VISIBLE_DEVICES is set by the CDI device, so it is always device 0 inside),
checkpoints to /outputs every epoch, and resumes from the newest checkpoint on the `runs`
volume when it is retried after a failure or re-run."""

import os
import time
from pathlib import Path

import torch
from torch import nn

EPOCHS = int(os.environ.get("EPOCHS", "20"))
CHECKPOINTS = Path(os.environ.get("CHECKPOINTS", "/checkpoints"))


def main() -> None:
    assert torch.cuda.is_available(), "no GPU: run this with --gpus 1 (or the recipe's plan)"
    device = torch.device("cuda:0")
    print(f"training on {torch.cuda.get_device_name(device)}", flush=True)
    torch.manual_seed(0)
    inputs = torch.randn(65536, 512, device=device)
    targets = (inputs.sum(dim=1, keepdim=True) > 0).float()
    model = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 1)).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    start = resume(model, optimiser)
    for epoch in range(start, EPOCHS):
        began = time.monotonic()
        for batch in range(0, len(inputs), 4096):
            loss = nn.functional.binary_cross_entropy_with_logits(
                model(inputs[batch : batch + 4096]), targets[batch : batch + 4096]
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        took = time.monotonic() - began
        print(f"epoch {epoch + 1}/{EPOCHS} loss {loss.item():.4f} ({took:.1f} s)", flush=True)
        save(model, optimiser, epoch + 1)
    torch.save(model.state_dict(), "/outputs/model.pt")
    print("saved /outputs/model.pt", flush=True)


def resume(model: nn.Module, optimiser: torch.optim.Optimizer) -> int:
    newest = max(CHECKPOINTS.glob("epoch-*.pt"), default=None)
    if newest is None:
        return 0
    state = torch.load(newest, weights_only=True)
    model.load_state_dict(state["model"])
    optimiser.load_state_dict(state["optimiser"])
    print(f"resumed from {newest}", flush=True)
    return int(state["epoch"])


def save(model: nn.Module, optimiser: torch.optim.Optimizer, epoch: int) -> None:
    CHECKPOINTS.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "optimiser": optimiser.state_dict(), "epoch": epoch}
    torch.save(state, CHECKPOINTS / f"epoch-{epoch:04d}.pt")


if __name__ == "__main__":
    main()

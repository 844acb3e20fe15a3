"""The policy prompt: one function used by sampling, rollouts, search and SFT alike."""
from __future__ import annotations

POLICY_SYSTEM = (
    "You are a careful math solver. Solve the problem step by step. Write each step of your "
    "reasoning as one logically complete chunk wrapped in <chunk> and </chunk> tags. Put the final "
    "answer in \\boxed{} inside the last chunk."
)


def policy_messages(problem: str, system: str | None = POLICY_SYSTEM) -> list[dict]:
    """Chat messages asking the policy to solve `problem` in <chunk> tags with a boxed answer."""
    messages = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": problem.strip()})
    return messages

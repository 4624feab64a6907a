"""
The looped GPT: a small GPT-2 whose blocks are applied b times (b loops), with the embedded
prompt re-injected at every loop, read out at the x tokens.

    e   = read_in(tokens) + pe              # the prompt, embedded once
    h_0 = 0
    h_t = ln_f(blocks(inject(h_{t-1}, e)))  # t = 1..b, the same weights every time
    y^(t) = read_out(h_t) at the x tokens

Reading order: attention, MLP, block, config, model (embedding, loop, truncation, loss), then the
optimizer and FLOPs that train.py uses, and loading a trained model.
"""

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from configurator import ConfigError
from rundir import load_checkpoint

POS_EMBS = ('none', 'learned', 'sinusoidal', 'type')
INJECTS = ('add', 'none', 'concat', 'gated')
SELECTS = ('first', 'random', 'last', 'shuffle')
SCHEDULES = ('constant', 'shrink')
LOSS_ONS = ('all', 'query')
ATTENTIONS = ('sdpa', 'manual')


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention; the causal mask is a switch, not a given."""

    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.config = config

    def forward(self, x):
        B, L, C = x.shape  # batch, tokens, channels
        nh, causal = self.config.n_head, self.config.causal
        # (B, nh, L, hs) each
        q, k, v = (t.view(B, L, nh, C // nh).transpose(1, 2) for t in self.c_attn(x).split(C, dim=2))
        dropout = self.config.dropout if self.training else 0.0
        if self.config.attention == 'sdpa':
            # fused kernel: the (L, L) matrix is never stored, masked blocks are skipped
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=causal)
        else:
            # the explicit path, kept as the plain baseline the benchmark compares against
            att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))  # (B, nh, L, L)
            if causal:
                mask = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
                att = att.masked_fill(~mask, float('-inf'))
            att = F.dropout(F.softmax(att, dim=-1), dropout, self.training)
            y = att @ v  # (B, nh, L, hs)
        y = y.transpose(1, 2).contiguous().view(B, L, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.mlp_size, bias=config.bias)
        self.c_proj = nn.Linear(config.mlp_size, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm GPT-2 block."""

    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


@dataclass
class LoopedGPTConfig:
    n_dims: int = 20          # d: size of each x
    n_points: int = 64        # N: the most in-context examples a prompt holds (sets the context 2N + 1)
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    mlp_size: int = 256
    dropout: float = 0.0
    bias: bool = True
    pos_emb: str = 'learned'  # none | learned | sinusoidal | type
    causal: bool = True
    attention: str = 'sdpa'   # sdpa | manual
    inject: str = 'add'       # add | none | concat | gated
    n_loops: int = 10         # b: loops at training time (the truncation schedule counts in these)
    loss_window: int = 0      # the last loss_window loops (0: all): read out, carry gradient, in the loss
    loss_on: str = 'all'      # all x positions, or the query only
    n_keep: int = 0           # examples kept after the cut; 0 keeps all
    select: str = 'first'     # first | random | last | shuffle
    truncate_after: int = 1   # cut after this loop (0: straight after the embedding)
    n_keep_schedule: str = 'constant'  # constant | shrink
    checkpoint_loops: bool = False  # recompute each loop's activations in the backward pass: less memory

    @property
    def block_size(self):
        return 2 * self.n_points + 1


def interleave(xs, ys):
    """Prompt tokens x_1, [y_1,0..0], ..., x_k, [y_k,0..0], x_{k+1}: (B, k+1, d), (B, k+1) -> (B, 2k+1, d).
    The query's y (ys[:, -1]) is the target and never enters the prompt."""
    B, P, d = xs.shape
    ys_wide = F.pad(ys.unsqueeze(-1), (0, d - 1))  # (B, P, d): y, then d - 1 zeros
    return torch.stack((xs, ys_wide), dim=2).view(B, 2 * P, d)[:, :-1]


class LoopedGPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.config = config
        C = config.n_embd
        self.read_in = nn.Linear(config.n_dims, C)
        if config.pos_emb == 'learned':
            self.wpe = nn.Embedding(config.block_size, C)
        elif config.pos_emb == 'type':
            self.wpe = nn.Embedding(2, C)  # one vector for x tokens, one for y tokens
        elif config.pos_emb == 'sinusoidal':
            # PE[p, 2i] = sin(p / 10000^(2i/C)), PE[p, 2i+1] = cos(p / 10000^(2i/C))
            angle = torch.arange(config.block_size).unsqueeze(1) * torch.exp(
                torch.arange(0, C, 2) * (-math.log(10000.0) / C))  # (P, C/2)
            pe = torch.stack((angle.sin(), angle.cos()), dim=2).flatten(1)[:, :C]  # sin and cos alternate
            self.register_buffer('wpe', pe, persistent=False)
        if config.inject == 'concat':
            self.inject_proj = nn.Linear(2 * C, C)
        elif config.inject == 'gated':
            self.inject_gate = nn.Parameter(torch.ones(C))
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(C, bias=config.bias)
        self.read_out = nn.Linear(C, 1)

        for module in self.modules():  # GPT-2's init: weights N(0, 0.02), biases 0
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        # read_in and read_out keep PyTorch's default init, as in Garg et al.'s and Yang et al.'s code: at
        # std 0.02 the injected prompt would be ~20x smaller than the normalised state it is added to
        self.read_in.reset_parameters()
        self.read_out.reset_parameters()
        for name, p in self.named_parameters():  # GPT-2: scale the residual projections by depth
            if name.endswith('c_proj.weight'):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def num_params(self):
        return sum(p.numel() for p in self.parameters())

    # --- the loop ------------------------------------------------------------

    def embed(self, xs, ys):
        """The prompt embedded once, with its positional encoding: (B, 2k+1, C)."""
        tokens = interleave(xs, ys)
        L = tokens.size(1)
        e = self.read_in(tokens)
        if self.config.pos_emb in ('learned', 'sinusoidal'):
            assert L <= self.config.block_size, f'prompt of {L} tokens, context is {self.config.block_size}'
            e = e + (self.wpe[:L] if self.config.pos_emb == 'sinusoidal' else self.wpe.weight[:L])
        elif self.config.pos_emb == 'type':
            e = e + self.wpe.weight[torch.arange(L, device=e.device) % 2]
        return self.drop(e)

    def inject(self, h, e):
        mode = self.config.inject
        if mode == 'add':
            return h + e
        if mode == 'none':
            return h  # e entered once, as h_0 (see forward)
        if mode == 'concat':
            return self.inject_proj(torch.cat((h, e), dim=-1))
        return h + self.inject_gate * e  # gated

    def one_loop(self, h, e):
        """One pass through the blocks: h_t = ln_f(blocks(inject(h_{t-1}, e)))."""
        x = self.inject(h, e)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def examples_seen(self, t, n_examples, n_keep, n_loops_train):
        """How many examples loop t (1-based) sees."""
        c = self.config
        if n_keep <= 0 or n_keep >= n_examples or t <= c.truncate_after:
            return n_examples
        if c.n_keep_schedule == 'shrink' and n_loops_train > c.truncate_after:
            # linear from N (at the cut) to n_keep (at the last training loop), then flat
            frac = min(1.0, (t - c.truncate_after) / (n_loops_train - c.truncate_after))
            return round(n_examples - (n_examples - n_keep) * frac)
        return n_keep

    def select(self, n_now, n, scores):
        """Which n of the n_now examples in hand to keep: (B, n) indices into them. random and shuffle keep
        the n highest scores (B, n_now), drawn before the loop: the loop draws nothing, one graph compiles."""
        mode, B = self.config.select, scores.size(0)
        if mode == 'first':
            return torch.arange(n, device=scores.device).expand(B, n)
        if mode == 'last':
            return torch.arange(n_now - n, n_now, device=scores.device).expand(B, n)
        chosen = scores.topk(n, dim=1).indices  # a random n-subset, in random order
        return chosen if mode == 'shuffle' else chosen.sort(dim=1).values

    def forward(self, xs, ys, n_loops=None, loss_window=None, n_keep=None, scores=None):
        """xs: (B, k+1, d) the k examples' x and the query's; ys: (B, k+1) their y (the query's: the target);
        scores: (B, k) one uniform draw per example, for select = random | shuffle. Runs n_loops loops; the
        last loss_window are read out and carry gradient: preds holds, for each, the prediction (B, n_t + 1)
        at every x token still in hand (the query's last), and loss is their mean squared error."""
        c = self.config
        n_loops = c.n_loops if n_loops is None else n_loops
        loss_window = min((c.loss_window if loss_window is None else loss_window) or n_loops, n_loops)
        n_keep = c.n_keep if n_keep is None else n_keep
        B, n_examples = xs.size(0), xs.size(1) - 1
        if scores is None:
            assert c.select in ('first', 'last') or not 0 < n_keep < n_examples, \
                f'select={c.select} needs scores'
            scores = xs.new_zeros(B, n_examples)

        e = self.embed(xs, ys)  # (B, L, C)
        # with inject=none the prompt enters once, as the first loop's input
        h = e if c.inject == 'none' else torch.zeros_like(e)
        targets = ys  # (B, n_t + 1): the y of each x token still in hand, the query's last
        preds, losses = [], []
        first_graph_loop = n_loops - loss_window + 1
        for t in range(1, n_loops + 1):
            n_now = targets.size(1) - 1
            n = self.examples_seen(t, n_examples, n_keep, c.n_loops)
            if n < n_now:
                pick = self.select(n_now, n, scores)  # (B, n)
                # examples go as whole (x, y) token pairs; the query token is always kept, last
                pairs = torch.stack((2 * pick, 2 * pick + 1), dim=2).view(B, 2 * n)
                query = torch.full((B, 1), 2 * n_now, device=xs.device)
                token_idx = torch.cat((pairs, query), dim=1).unsqueeze(-1).expand(-1, -1, e.size(-1))
                h, e = h.gather(1, token_idx), e.gather(1, token_idx)  # (B, 2n+1, C)
                targets = torch.cat((targets[:, :-1].gather(1, pick), targets[:, -1:]), dim=1)
                scores = scores.gather(1, pick)
            if t < first_graph_loop:
                with torch.no_grad():  # the loops before the loss window build no graph
                    h = self.one_loop(h, e)
                continue
            if c.checkpoint_loops and torch.is_grad_enabled():  # keep h only; recompute the rest
                h = torch.utils.checkpoint.checkpoint(self.one_loop, h, e, use_reentrant=False)
            else:
                h = self.one_loop(h, e)
            pred = self.read_out(h[:, 0::2]).squeeze(-1)  # (B, n_t + 1), read out at the x tokens only
            preds.append(pred)
            on = slice(-1, None) if c.loss_on == 'query' else slice(None)  # the query's column, or all
            losses.append(F.mse_loss(pred[:, on], targets[:, on]))
        return preds, torch.stack(losses).mean()

    # --- training helpers ----------------------------------------------------

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type, optimizer='adamw'):
        """A list of optimizers, each parameter in exactly one: AdamW on all, or (muon) PyTorch's Muon on
        the blocks' matrices and AdamW on the rest (read_in, read_out, embeddings, LayerNorms, biases)."""
        params = [p for p in self.parameters() if p.requires_grad]
        muon = [p for p in self.blocks.parameters() if p.dim() == 2] if optimizer == 'muon' else []
        rest = [p for p in params if all(p is not q for q in muon)]
        # matrices decay; biases, LayerNorm gains and the injection gate do not
        groups = [{'params': [p for p in rest if p.dim() >= 2], 'weight_decay': weight_decay},
                  {'params': [p for p in rest if p.dim() < 2], 'weight_decay': 0.0}]
        fused = device_type == 'cuda'  # one kernel for the whole update on CUDA
        optimizers = [torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=fused)]
        if muon:  # its update scaled to AdamW's size (match_rms_adamw): one lr and schedule drive both
            optimizers.append(torch.optim.Muon(muon, lr=learning_rate, weight_decay=weight_decay,
                                               adjust_lr_fn='match_rms_adamw'))
        return optimizers

    def flops_per_step(self, batch_size, n_examples, n_loops, loss_window, n_keep=None):
        """Matmul FLOPs of one training step: every loop forward, the last loss_window also backward (2x
        forward; 3x with checkpoint_loops), each loop at the tokens it still has after truncation. n_loops: a
        b, or a range of them for their mean (a drawn b), counted in time linear in the largest b."""
        c = self.config
        n_keep = c.n_keep if n_keep is None else n_keep
        loops = range(n_loops, n_loops + 1) if isinstance(n_loops, int) else n_loops
        weights = 2 * c.n_layer * (4 * c.n_embd * c.n_embd + 2 * c.n_embd * c.mlp_size)  # per token
        forward = [0]  # forward[t]: loops 1..t, forward only
        for t in range(1, max(loops) + 1):
            n_tokens = 2 * self.examples_seen(t, n_examples, n_keep, c.n_loops) + 1
            attention = 2 * c.n_layer * 2 * n_tokens * c.n_embd // (2 if c.causal else 1)  # q.k and att.v
            forward.append(forward[-1] + n_tokens * (weights + attention))
        grad = 4 if c.checkpoint_loops else 3
        total = sum(forward[b] + (grad - 1) * (forward[b] - forward[max(0, b - loss_window)]) for b in loops)
        return batch_size * total / len(loops)


# dense peak FLOP/s by dtype, from NVIDIA's H100 SXM datasheet; the H200 is the same GH100 die with other
# memory, and spec tables give it the same figures. Other devices print no MFU
PEAK_FLOPS = {'bfloat16': 989e12, 'float32': 67e12}


def estimate_mfu(flops_per_s, device, dtype):
    """Model FLOPs utilisation against the dense peak of the GPU in use, where it is known; else None."""
    gpu = torch.cuda.get_device_name(device) if device.type == 'cuda' else ''
    return flops_per_s / PEAK_FLOPS[dtype] if 'H100' in gpu or 'H200' in gpu else None


def autocast(device, dtype):
    """(context, dtype name): bf16 autocast on CUDA where supported (auto), fp32 everywhere else unless asked:
    on a CPU without native bf16 matmuls, as the 2-core one these timings are from, bf16 is 10-25x slower."""
    if dtype == 'auto':  # bf16 where this GPU has it natively (Ampere on), not emulated (slow)
        dtype = 'bfloat16' if device.type == 'cuda' and torch.cuda.get_device_capability(device) >= (8, 0) \
            else 'float32'
    if dtype == 'float32':
        return nullcontext(), dtype
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16), dtype


def load_model(path, device='cpu'):
    """A trained model from its ckpt.pt, on any device, whatever it was trained on: (model, ckpt)."""
    ckpt = load_checkpoint(path)
    model = LoopedGPT(LoopedGPTConfig(**ckpt['model_args']))
    try:
        model.load_state_dict(ckpt['model'])
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise ConfigError(f'{path} does not fit the model its config describes: {first}') from None
    return model.to(device), ckpt

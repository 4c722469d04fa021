"""GraphCodeBERT-style data-flow graph over variable occurrences, one rule set for five grammars.

Edges are between leaf-token indices, "u <kind> v" meaning the value at occurrence u comes from v:
- a use of x gets `comesFrom` edges to every definition of x that can reach it (last definition on each
  path; the first use of a name never defined becomes its reference definition, as in GraphCodeBERT);
- `x = e` (declarations, `:=`, `as` targets, for-each targets, comprehension targets): x `computedFrom` every
  variable occurrence in e; with tuple targets of equal arity the pairs are matched element-wise;
- `x op= e`: the target also reads its old value, so x `comesFrom` its previous definitions as well;
  `x++` / `x--`: `comesFrom` only;
- for-each loops (`for x in xs`): x `computedFrom` xs; loop bodies (for-each, while, C-style for) are walked
  twice so that flow carried around the loop is found;
- if / elif / else, switch and try branches start from the same state; afterwards their definitions are
  merged (a missing else keeps the state from before the branch);
- function parameters are definitions; call arguments and return values are ordinary uses.
Attribute / member names, keyword-argument names, type annotations and imports are not variables.

How it runs on any input: every `walk` is a generator that yields its sub-walks to one driver loop (an
explicit stack, never Python recursion, whatever the nesting). Walking a loop twice per entry would cost
2^depth for nested loops, so each loop's result is memoised on its entry state restricted to the names
that occur inside it: a walk is a pure function of that state (edges are a set), so the memo changes no
label, and a loop met again with the same projected state (the usual case from the second pass of an
outer loop on) is not walked again. Definition sets only grow along the passes, so the distinct entry
states per loop are bounded by the definitions inside it; `budget` (steps, from `ParseLimits`) caps
the adversarial rest (`too_complex`). Field names come from tree cursors, never from
`field_name_for_child(i)` in a loop (quadratic in wide nodes), and parents are never asked for
(`Node.parent` searches down from the root).
"""

from __future__ import annotations

import bisect
import time

from .code_graph import COMES_FROM, COMPUTED_FROM, ParseLimitError

State = dict[str, set[int]]


def _merge(*states: State) -> State:
    out: State = {}
    for st in states:
        for k, v in st.items():
            out.setdefault(k, set()).update(v)
    return out


def _copy(st: State) -> State:
    return {k: set(v) for k, v in st.items()}


def _children_with_fields(node) -> list:
    """(child, field name or '') for every child, in order, in one cursor pass."""
    cursor = node.walk()
    if not cursor.goto_first_child():
        return []
    out = [(cursor.node, cursor.field_name or "")]
    while cursor.goto_next_sibling():
        out.append((cursor.node, cursor.field_name or ""))
    return out


class _DataFlow:
    def __init__(self, leaves, spec, budget: int, deadline):
        self.spec = spec
        self.leaf_index = {leaf.node.id: i for i, leaf in enumerate(leaves)}
        self.leaf_names = [leaf.node.text.decode("utf-8", errors="replace") for leaf in leaves]
        nv = spec.non_variable_fields
        self.var_ids = {leaf.node.id for leaf in leaves if leaf.node.type in spec.variable_types
                        and (leaf.parent_type, leaf.field) not in nv}
        self.leaf_bytes = [leaf.node.start_byte for leaf in leaves]
        self.edges: set[tuple[int, int, str]] = set()
        self.variables: set[int] = set()
        self.memo: dict = {}
        self.budget, self.deadline, self.steps, self.checked = budget, deadline, 0, 0
        self.special = (spec.skip_types | spec.operator_assignment | set(spec.assignment) | set(spec.augmented)
                        | set(spec.update) | set(spec.for_in) | spec.loops | spec.branches | set(spec.functions)
                        | spec.comprehensions)

    # ---- helpers ---------------------------------------------------------------------------------
    def is_var(self, node) -> bool:
        return node.id in self.var_ids

    def name(self, node) -> str:
        i = self.leaf_index.get(node.id)
        return self.leaf_names[i] if i is not None else node.text.decode("utf-8", errors="replace")

    def var_leaves(self, node) -> list:
        """All variable occurrences inside `node`, in source order (skipped subtrees excluded)."""
        out, stack = [], [node]
        while stack:
            n = stack.pop()
            if n.type in self.spec.skip_types:
                continue
            if self.is_var(n):
                out.append(n)
                continue
            stack.extend(reversed(n.children))
        return out

    def targets(self, node) -> list:
        """Plain assignment targets in `node` (identifiers, possibly inside tuple / pattern containers)."""
        spec, out, stack = self.spec, [], [node]
        while stack:
            n = stack.pop()
            if n is None:
                continue
            if self.is_var(n):
                out.append(n)
            elif n.type in spec.patterns:
                kids = [c for c, f in _children_with_fields(n) if c.is_named and f not in spec.pattern_value_fields
                        and (n.type, f) not in spec.pattern_skip_fields]
                stack.extend(reversed(kids))
            elif n.type in spec.assignment:  # e.g. `a = 1` default inside a pattern
                stack.append(n.child_by_field_name(spec.assignment[n.type][0]))
        return out

    def names_inside(self, node) -> frozenset:
        """Names of the variable occurrences under `node` (tokens are sorted by byte: one contiguous run)."""
        lo = bisect.bisect_left(self.leaf_bytes, node.start_byte)
        hi = bisect.bisect_left(self.leaf_bytes, node.end_byte)
        return frozenset(self.leaf_names[i] for i in range(lo, hi))

    def use(self, node, st: State) -> None:
        i = self.leaf_index[node.id]
        self.variables.add(i)
        name = self.name(node)
        if name in st:
            for d in st[name]:
                if d != i:
                    self.edges.add((i, d, COMES_FROM))
        else:
            st[name] = {i}

    def define(self, node, st: State, sources: list, reads_old: bool = False) -> None:
        i = self.leaf_index[node.id]
        self.variables.add(i)
        name = self.name(node)
        if reads_old:
            for d in st.get(name, ()):
                if d != i:
                    self.edges.add((i, d, COMES_FROM))
        for s in sources:
            j = self.leaf_index[s.id]
            if j != i:
                self.edges.add((i, j, COMPUTED_FROM))
        st[name] = {i}

    # ---- the driver --------------------------------------------------------------------------------
    def charge(self, steps: int) -> None:
        """Count work (a sub-walk is one step, copying or merging a state one step per name)."""
        self.steps += steps
        if self.steps > self.budget:
            raise ParseLimitError("too_complex", f"data flow needs over {self.budget} steps")
        if self.steps - self.checked > 4096:
            self.checked = self.steps
            if _expired(self.deadline):
                raise ParseLimitError("too_slow", f"data flow {_describe(self.deadline)}")

    def run(self, root) -> None:
        """Run `walk(root, {})` with an explicit stack of generators: each yields (node, state) to ask
        for a sub-walk and receives the resulting state."""
        stack = [self.walk(root, {})]
        result = None
        while stack:
            try:
                node, st = stack[-1].send(result)
            except StopIteration as stop:
                stack.pop()
                result = stop.value
                continue
            self.charge(1)
            stack.append(self.walk(node, st))
            result = None

    # ---- the walk (generators: `yield node, state` walks a child and returns its state) -------------
    def walk(self, node, st: State):
        spec, t = self.spec, node.type
        if t in spec.skip_types:
            return st
        if self.is_var(node):
            self.use(node, st)
            return st
        if t in spec.operator_assignment:
            op = node.child_by_field_name("operator")
            op_text = self.name(op) if op is not None else "="
            left, right = spec.assignment[t]
            return (yield from self.assign(node, left, right, st, augmented=op_text not in spec.plain_operators))
        if t in spec.assignment:
            left, right = spec.assignment[t]
            return (yield from self.assign(node, left, right, st, augmented=False))
        if t in spec.augmented:
            left, right = spec.augmented[t]
            return (yield from self.assign(node, left, right, st, augmented=True))
        if t in spec.update:
            f = spec.update[t]
            target = node.child_by_field_name(f) if f else next((c for c in node.children if c.is_named), None)
            if target is not None and self.is_var(target):
                self.define(target, st, [], reads_old=True)
                return st
            return (yield from self.walk_children(node, st))
        if t in spec.for_in:
            return (yield from self.memoised(node, st, self.for_in))
        if t in spec.loops:
            return (yield from self.memoised(node, st, self.loop))
        if t in spec.branches:
            return (yield from self.branch(node, st))
        if t in spec.functions:
            return (yield from self.function(node, *spec.functions[t], st=st))
        if t in spec.comprehensions:
            body = node.child_by_field_name("body")
            for child in node.children:
                if body is None or child.id != body.id:
                    st = yield child, st
            if body is not None:
                st = yield body, st
            return st
        return (yield from self.walk_children(node, st))

    def walk_children(self, node, st: State):
        special, var_ids = self.special, self.var_ids
        for child in node.children:
            # a plain leaf (punctuation, keywords, literals) leaves the state as it is: no sub-walk needed
            if child.child_count == 0 and child.id not in var_ids and child.type not in special:
                continue
            st = yield child, st
        return st

    def memoised(self, node, st: State, walker):
        """`walker(node, st)` on the part of `st` it can read, from the memo when seen before."""
        names = self.names_inside(node)
        self.charge(len(names) + min(len(names), len(st)))
        seen = {k: st[k] for k in names if k in st} if len(names) < len(st) else \
            {k: v for k, v in st.items() if k in names}
        key = (node.id, frozenset((k, frozenset(v)) for k, v in seen.items()))
        hit = self.memo.get(key)
        if hit is None:
            inner = yield from walker(node, seen)
            hit = self.memo[key] = {k: frozenset(v) for k, v in inner.items()}
        out = {k: v for k, v in st.items() if k not in names}
        out.update((k, set(v)) for k, v in hit.items())
        return out

    def assign(self, node, left_field: str, right_field: str, st: State, augmented: bool):
        left_nodes = node.children_by_field_name(left_field)
        if right_field:
            right_nodes = node.children_by_field_name(right_field)
        else:  # the value is every named child that is not the target
            left_ids = {n.id for n in left_nodes}
            right_nodes = [c for c in node.children if c.is_named and c.id not in left_ids]
        for r in right_nodes:
            st = yield r, st
        # element-wise pairing for `a, b = x, y`
        lhs = [n for ln in left_nodes for n in (ln.named_children if ln.type in self.spec.patterns else [ln])]
        rhs = [n for rn in right_nodes for n in (rn.named_children if rn.type in self.spec.patterns else [rn])]
        if len(lhs) == len(rhs) and len(lhs) > 1:
            pairs = list(zip(lhs, rhs))
        else:
            pairs = [(ln, None) for ln in left_nodes]
        all_sources = [v for r in right_nodes for v in self.var_leaves(r)]
        for target_root, source_root in pairs:
            sources = all_sources if source_root is None else self.var_leaves(source_root)
            targets = self.targets(target_root)
            target_ids = {n.id for n in targets}
            # anything on the left that is not a plain target (a[i], obj.x) is read
            for v in self.var_leaves(target_root):
                if v.id not in target_ids:
                    self.use(v, st)
            for tnode in targets:
                self.define(tnode, st, sources, reads_old=augmented)
        return st

    def for_in(self, node, st: State):
        left_field, right_field, body_field = self.spec.for_in[node.type]
        left = node.child_by_field_name(left_field)
        right = node.child_by_field_name(right_field)
        body = node.child_by_field_name(body_field)
        if right is not None:
            st = yield right, st
        sources = self.var_leaves(right) if right is not None else []
        self.charge(3 * len(st))
        before = _copy(st)
        else_clauses = [c for c in node.children if c.type in self.spec.loop_else_types]  # Python's `else:`
        left_targets = self.targets(left)
        outs = []
        for state in (_copy(st), None):  # twice: the second pass starts from before + the first pass
            if state is None:
                state = _merge(before, outs[0])
            for tnode in left_targets:
                self.define(tnode, state, sources)
            if body is not None:
                state = yield body, state
            for child in else_clauses:
                state = yield child, state
            outs.append(state)
        return _merge(before, outs[1])

    def loop(self, node, st: State):
        self.charge(3 * len(st))
        before = _copy(st)
        first = yield from self.walk_children(node, _copy(st))
        second = yield from self.walk_children(node, _merge(before, first))
        return _merge(before, second)

    def branch(self, node, st: State):
        spec = self.spec
        heads, arms = [], []  # arms: (child, its field under `node`)
        for child, f in _children_with_fields(node):
            if f in spec.branch_arm_fields or child.type in spec.branch_arm_types:
                arms.append((child, f))
            else:
                heads.append(child)
        for h in heads:  # condition (and Go's initializer) first
            st = yield h, st
        if node.type in spec.switch_types:
            # a switch body holds the cases: each case is an arm
            cases = []
            for a, f in arms:
                if a.type in spec.case_container_types:
                    cases.extend((c, "") for c in a.named_children)
                else:
                    cases.append((a, f))
            arms = cases
        outs = []
        self.charge(2 * len(st) * max(len(arms), 1))
        for a, _ in arms:
            out = yield a, _copy(st)
            outs.append(out)
        has_else = node.type not in spec.never_exhaustive and any(
            a.type in spec.exhaustive_arm_types or (node.type, f) in spec.exhaustive_fields for a, f in arms)
        if not outs:
            return st
        return _merge(*outs) if has_else else _merge(st, *outs)

    def function(self, node, name_field, params_field, body_field, st: State):
        name = node.child_by_field_name(name_field) if name_field else None
        if name is not None and self.is_var(name):
            self.define(name, st, [])
        self.charge(len(st))
        inner = _copy(st)
        params = node.child_by_field_name(params_field) if params_field else None
        if params is None and node.type in self.spec.single_parameter_fields:
            params = node.child_by_field_name(self.spec.single_parameter_fields[node.type])
        if params is not None:
            targets = self.targets(params)
            target_ids = {n.id for n in targets}
            # defaults and anything else in the parameter list are evaluated (uses) before binding
            for v in self.var_leaves(params):
                if v.id not in target_ids:
                    self.use(v, inner)
            for tnode in targets:
                self.define(tnode, inner, [])
        skip = {n.id for n in (name, params) if n is not None}
        for child in node.children:  # walk everything that is neither name nor parameters
            if child.id not in skip:
                inner = yield child, inner
        return st


def _expired(deadline) -> bool:
    """A `TimeBudget` (CPU time, `code_graph`'s) or a `time.perf_counter()` deadline, spent?"""
    return deadline.expired() if hasattr(deadline, "expired") else time.perf_counter() > deadline


def _describe(deadline) -> str:
    return deadline.describe() if hasattr(deadline, "describe") else "over the time limit"


def build_dataflow(root, leaves, spec, budget: int = 10**9,
                   deadline=float("inf")) -> tuple[list[tuple[int, int, str]], list[int]]:
    """Edges (u, v, kind) sorted, and the sorted leaf indices that are variable occurrences.

    `leaves` are the code-token leaves of `code_graph` (node, parent type, field); `budget` bounds the
    sub-walks and `deadline` the time: a `mambacode.languages.TimeBudget` (CPU time, as `code_graph` passes)
    or a `time.perf_counter()` value (`ParseLimitError` beyond either).
    """
    flow = _DataFlow(leaves, spec, budget, deadline)
    flow.run(root)
    return sorted(flow.edges), sorted(flow.variables)

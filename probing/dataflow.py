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
"""

from __future__ import annotations

from .code_graph import COMES_FROM, COMPUTED_FROM

State = dict[str, set[int]]


def _merge(*states: State) -> State:
    out: State = {}
    for st in states:
        for k, v in st.items():
            out.setdefault(k, set()).update(v)
    return out


def _copy(st: State) -> State:
    return {k: set(v) for k, v in st.items()}


def _field_of(node) -> str:
    """Name of the field under which `node` hangs from its parent ('' if none)."""
    parent = node.parent
    if parent is None:
        return ""
    for i, child in enumerate(parent.children):
        if child.id == node.id:
            return parent.field_name_for_child(i) or ""
    return ""


class _DataFlow:
    def __init__(self, leaves, spec):
        self.spec = spec
        self.leaf_index = {node.id: i for i, node in enumerate(leaves)}
        self.edges: set[tuple[int, int, str]] = set()
        self.variables: set[int] = set()

    # ---- helpers ---------------------------------------------------------------------------------
    def is_var(self, node) -> bool:
        if node.type not in self.spec.variable_types or node.id not in self.leaf_index:
            return False
        parent = node.parent
        if parent is not None and self.spec.non_variable_fields:
            if (parent.type, _field_of(node)) in self.spec.non_variable_fields:
                return False
        return True

    def name(self, node) -> str:
        return node.text.decode("utf-8", errors="replace")

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
        if node is None:
            return []
        if self.is_var(node):
            return [node]
        if node.type in self.spec.patterns:
            out = []
            for i, child in enumerate(node.children):
                f = node.field_name_for_child(i) or ""
                if not child.is_named or f in self.spec.pattern_value_fields:
                    continue
                if (node.type, f) in self.spec.pattern_skip_fields:
                    continue
                out.extend(self.targets(child))
            return out
        if node.type in self.spec.assignment:  # e.g. `a = 1` default inside a pattern
            return self.targets(node.child_by_field_name(self.spec.assignment[node.type][0]))
        return []

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

    # ---- the walk ----------------------------------------------------------------------------------
    def walk(self, node, st: State) -> State:
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
            if op_text in spec.plain_operators:
                return self.assign(node, left, right, st, augmented=False)
            return self.assign(node, left, right, st, augmented=True)
        if t in spec.assignment:
            left, right = spec.assignment[t]
            return self.assign(node, left, right, st, augmented=False)
        if t in spec.augmented:
            left, right = spec.augmented[t]
            return self.assign(node, left, right, st, augmented=True)
        if t in spec.update:
            f = spec.update[t]
            target = node.child_by_field_name(f) if f else next((c for c in node.children if c.is_named), None)
            if target is not None and self.is_var(target):
                self.define(target, st, [], reads_old=True)
                return st
            return self.walk_children(node, st)
        if t in spec.for_in:
            return self.for_in(node, *spec.for_in[t], st=st)
        if t in spec.loops:
            return self.loop(node, st)
        if t in spec.branches:
            return self.branch(node, st)
        if t in spec.functions:
            return self.function(node, *spec.functions[t], st=st)
        if t in spec.comprehensions:
            body = node.child_by_field_name("body")
            for child in node.children:
                if body is None or child.id != body.id:
                    st = self.walk(child, st)
            return self.walk(body, st) if body is not None else st
        return self.walk_children(node, st)

    def walk_children(self, node, st: State) -> State:
        for child in node.children:
            st = self.walk(child, st)
        return st

    def assign(self, node, left_field: str, right_field: str, st: State, augmented: bool) -> State:
        left_nodes = node.children_by_field_name(left_field)
        if right_field:
            right_nodes = node.children_by_field_name(right_field)
        else:  # the value is every named child that is not the target
            left_ids = {n.id for n in left_nodes}
            right_nodes = [c for c in node.children if c.is_named and c.id not in left_ids]
        for r in right_nodes:
            st = self.walk(r, st)
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

    def for_in(self, node, left_field, right_field, body_field, st: State) -> State:
        left = node.child_by_field_name(left_field)
        right = node.child_by_field_name(right_field)
        body = node.child_by_field_name(body_field)
        if right is not None:
            st = self.walk(right, st)
        sources = self.var_leaves(right) if right is not None else []
        before = _copy(st)

        def once(state):
            for tnode in self.targets(left):
                self.define(tnode, state, sources)
            if body is not None:
                state = self.walk(body, state)
            for child in node.children:  # e.g. Python's `else:` clause of a loop
                if child.type in self.spec.loop_else_types:
                    state = self.walk(child, state)
            return state

        first = once(_copy(st))
        second = once(_merge(before, first))
        return _merge(before, second)

    def loop(self, node, st: State) -> State:
        before = _copy(st)
        first = self.walk_children(node, _copy(st))
        second = self.walk_children(node, _merge(before, first))
        return _merge(before, second)

    def branch(self, node, st: State) -> State:
        spec = self.spec
        heads, arms = [], []  # arms: (child, its field under `node`)
        for i, child in enumerate(node.children):
            f = node.field_name_for_child(i) or ""
            if f in spec.branch_arm_fields or child.type in spec.branch_arm_types:
                arms.append((child, f))
            else:
                heads.append(child)
        for h in heads:  # condition (and Go's initializer) first
            st = self.walk(h, st)
        if node.type in spec.switch_types:
            # a switch body holds the cases: each case is an arm
            cases = []
            for a, f in arms:
                if a.type in spec.case_container_types:
                    cases.extend((c, "") for c in a.named_children)
                else:
                    cases.append((a, f))
            arms = cases
        outs = [self.walk(a, _copy(st)) for a, _ in arms]
        has_else = node.type not in spec.never_exhaustive and any(
            a.type in spec.exhaustive_arm_types or (node.type, f) in spec.exhaustive_fields for a, f in arms)
        if not outs:
            return st
        return _merge(*outs) if has_else else _merge(st, *outs)

    def function(self, node, name_field, params_field, body_field, st: State) -> State:
        if name_field:
            name = node.child_by_field_name(name_field)
            if name is not None and self.is_var(name):
                self.define(name, st, [])
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
        for child in node.children:  # walk everything that is neither name nor parameters
            if (name_field and child == node.child_by_field_name(name_field)) or (params is not None and
                                                                                   child.id == params.id):
                continue
            inner = self.walk(child, inner)
        return st


def build_dataflow(root, leaves, spec) -> tuple[list[tuple[int, int, str]], list[int]]:
    """Edges (u, v, kind) sorted, and the sorted leaf indices that are variable occurrences."""
    flow = _DataFlow(leaves, spec)
    flow.walk(root, {})
    return sorted(flow.edges), sorted(flow.variables)

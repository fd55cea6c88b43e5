package engine

import (
	"fmt"
	"strings"
)

// Edge says Child depends on Parent (step names).
type Edge struct {
	Parent, Child string
}

// Edges lists a task view's dependencies, ordered by parent then child
// declaration order. The view must come from GetTask.
func (v *TaskView) Edges() []Edge {
	var edges []Edge
	for _, parent := range v.Steps {
		for _, child := range v.Steps {
			for _, p := range v.DependsOn[child.ID] {
				if p == parent.Name {
					edges = append(edges, Edge{Parent: parent.Name, Child: child.Name})
				}
			}
		}
	}
	return edges
}

// stateColors gives each step state one colour in both renderings.
var stateColors = map[StepState]string{
	StepPending:          "#d9d9d9",
	StepEnqueued:         "#9ecae1",
	StepInProgress:       "#fdd835",
	StepWaitingForRetry:  "#ffb74d",
	StepComplete:         "#81c784",
	StepError:            "#e57373",
	StepCancelled:        "#a1887f",
	StepResolvedManually: "#ba68c8",
}

// DOT renders the task's DAG for Graphviz, nodes filled by state.
func (v *TaskView) DOT() string {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %q {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\"];\n", v.Task.ID.String())
	for _, s := range v.Steps {
		fmt.Fprintf(&b, "  %q [label=\"%s\\n%s %d/%d\", fillcolor=%q];\n",
			s.Name, s.Name, s.State, s.Attempts, s.AttemptBudget, stateColors[s.State])
	}
	for _, e := range v.Edges() {
		fmt.Fprintf(&b, "  %q -> %q;\n", e.Parent, e.Child)
	}
	b.WriteString("}\n")
	return b.String()
}

// Mermaid renders the task's DAG as a Mermaid flowchart, nodes styled by
// state. Step names are valid Mermaid ids (the registry's name pattern).
func (v *TaskView) Mermaid() string {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	for _, s := range v.Steps {
		fmt.Fprintf(&b, "  %s[\"%s<br/>%s %d/%d\"]:::%s\n", s.Name, s.Name, s.State, s.Attempts, s.AttemptBudget, s.State)
	}
	for _, e := range v.Edges() {
		fmt.Fprintf(&b, "  %s --> %s\n", e.Parent, e.Child)
	}
	for _, st := range stepStates {
		fmt.Fprintf(&b, "  classDef %s fill:%s\n", st, stateColors[st])
	}
	return b.String()
}

package kube

import (
	corev1 "k8s.io/api/core/v1"
)

// RegionAffinity is the node affinity that places a workload: on nodes of
// its allowed regions when it names some, else of the server's region
// (when the server has one, ""), else nil (any node).
func RegionAffinity(allowed []string, server string) *corev1.Affinity {
	regions := allowed
	if len(regions) == 0 {
		if server == "" {
			return nil
		}
		regions = []string{server}
	}
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
				Key: RegionLabel, Operator: corev1.NodeSelectorOpIn, Values: append([]string(nil), regions...),
			}}}},
		},
	}}
}

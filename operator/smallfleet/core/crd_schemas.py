"""The CRDs' OpenAPI schemas as data, generated from crds/ by hack/gen_reference.py.

Do not edit: run `make docs`. Embedded as data so that the pure spec parser
checks exactly what the API server checks without reading files.
"""

from __future__ import annotations

import json
from typing import Any, Final

_JSON: Final = r"""{
 "ModelPipeline": {
  "description": "ModelPipeline composes SmallModels of its namespace into one endpoint: a Triton ensemble whose steps pass tensors from the pipeline's inputs through each step to its outputs, in one server process.",
  "properties": {
   "apiVersion": {
    "description": "APIVersion defines the versioned schema of this representation of an object.",
    "type": "string"
   },
   "kind": {
    "description": "Kind is a string value representing the REST resource this object represents.",
    "type": "string"
   },
   "metadata": {
    "type": "object"
   },
   "spec": {
    "description": "The pipeline's desired state, written by its owner.",
    "properties": {
     "expose": {
      "description": "Reach the model from outside the cluster through a Gateway API Gateway: the operator renders an HTTPRoute (and, with grpc.enabled, a GRPCRoute) from the gateway to the model's Service and reports whether the gateway accepted them as the Exposed condition. Needs the Gateway API CRDs (gateway.networking.k8s.io/v1) and a gateway controller; removing this field deletes the routes.",
      "properties": {
       "gateway": {
        "description": "The Gateway the routes attach to (their parentRef).",
        "properties": {
         "name": {
          "description": "The Gateway's name.",
          "maxLength": 253,
          "minLength": 1,
          "type": "string"
         },
         "namespace": {
          "description": "The Gateway's namespace; the model's own when unset. Its listeners must allow routes from the model's namespace (allowedRoutes), or the route is not Accepted.",
          "maxLength": 63,
          "minLength": 1,
          "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
          "type": "string"
         },
         "sectionName": {
          "description": "The Gateway listener the HTTPRoute attaches to; every listener that allows it when unset.",
          "maxLength": 253,
          "minLength": 1,
          "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
          "type": "string"
         }
        },
        "required": [
         "name"
        ],
        "type": "object"
       },
       "grpc": {
        "default": {
         "enabled": false
        },
        "description": "The GRPCRoute to Triton's gRPC API (port 8001, service inference.GRPCInferenceService). gRPC names the model inside each request, so the route matches the whole service: give it host names (or a listener) of its own when several models share a gateway, and apart from the HTTPRoute's, which a gateway may not share between an HTTPRoute and a GRPCRoute.",
        "properties": {
         "enabled": {
          "default": false,
          "description": "Render the GRPCRoute.",
          "type": "boolean"
         },
         "hostnames": {
          "description": "Host names of the GRPCRoute; the shared hostnames when empty.",
          "items": {
           "maxLength": 253,
           "minLength": 1,
           "pattern": "^(\\*\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
           "type": "string"
          },
          "maxItems": 16,
          "type": "array",
          "x-kubernetes-list-type": "set"
         },
         "sectionName": {
          "description": "The Gateway listener the GRPCRoute attaches to; gateway.sectionName when unset.",
          "maxLength": 253,
          "minLength": 1,
          "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
          "type": "string"
         }
        },
        "type": "object"
       },
       "hostnames": {
        "description": "Host names the routes answer for (a leading \"*.\" is a wildcard); every host the listener accepts when empty.",
        "items": {
         "maxLength": 253,
         "minLength": 1,
         "pattern": "^(\\*\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
         "type": "string"
        },
        "maxItems": 16,
        "type": "array",
        "x-kubernetes-list-type": "set"
       },
       "http": {
        "default": {
         "enabled": true
        },
        "description": "The HTTPRoute to Triton's HTTP/REST API (port 8000, the KServe v2 protocol).",
        "properties": {
         "enabled": {
          "default": true,
          "description": "Render the HTTPRoute.",
          "type": "boolean"
         },
         "pathPrefix": {
          "description": "The path prefix the route matches; /v2/models/<name> (this model's inference, metadata and readiness paths) when unset.",
          "maxLength": 1024,
          "minLength": 1,
          "pattern": "^/[^?#]*$",
          "type": "string"
         }
        },
        "type": "object"
       }
      },
      "required": [
       "gateway"
      ],
      "type": "object",
      "x-kubernetes-validations": [
       {
        "message": "expose needs http or grpc enabled: with both off there is nothing to route",
        "rule": "self.http.enabled || self.grpc.enabled"
       }
      ]
     },
     "inputs": {
      "description": "The pipeline's input tensors, which steps read by name.",
      "items": {
       "description": "One pipeline input tensor.",
       "properties": {
        "datatype": {
         "description": "The tensor's Triton data type.",
         "enum": [
          "BOOL",
          "UINT8",
          "UINT16",
          "UINT32",
          "UINT64",
          "INT8",
          "INT16",
          "INT32",
          "INT64",
          "FP16",
          "FP32",
          "FP64",
          "BF16",
          "BYTES"
         ],
         "type": "string"
        },
        "dims": {
         "description": "The tensor's shape without the batch dimension; -1 marks a variable dimension.",
         "items": {
          "format": "int64",
          "maximum": 1048576,
          "minimum": -1,
          "type": "integer"
         },
         "maxItems": 8,
         "minItems": 1,
         "type": "array",
         "x-kubernetes-list-type": "atomic",
         "x-kubernetes-validations": [
          {
           "message": "dims must be positive, or -1 for a variable dimension",
           "rule": "self.all(d, d == -1 || d > 0)"
          }
         ]
        },
        "name": {
         "description": "The tensor's name (no dots, so that \"<step>.<tensor>\" stays unambiguous).",
         "maxLength": 128,
         "minLength": 1,
         "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
         "type": "string"
        }
       },
       "required": [
        "name",
        "datatype",
        "dims"
       ],
       "type": "object"
      },
      "maxItems": 16,
      "minItems": 1,
      "type": "array",
      "x-kubernetes-list-map-keys": [
       "name"
      ],
      "x-kubernetes-list-type": "map"
     },
     "outputs": {
      "description": "The pipeline's output tensors, each taken from a step's output.",
      "items": {
       "description": "One pipeline output tensor.",
       "properties": {
        "datatype": {
         "description": "The tensor's Triton data type.",
         "enum": [
          "BOOL",
          "UINT8",
          "UINT16",
          "UINT32",
          "UINT64",
          "INT8",
          "INT16",
          "INT32",
          "INT64",
          "FP16",
          "FP32",
          "FP64",
          "BF16",
          "BYTES"
         ],
         "type": "string"
        },
        "dims": {
         "description": "The tensor's shape without the batch dimension; -1 marks a variable dimension.",
         "items": {
          "format": "int64",
          "maximum": 1048576,
          "minimum": -1,
          "type": "integer"
         },
         "maxItems": 8,
         "minItems": 1,
         "type": "array",
         "x-kubernetes-list-type": "atomic",
         "x-kubernetes-validations": [
          {
           "message": "dims must be positive, or -1 for a variable dimension",
           "rule": "self.all(d, d == -1 || d > 0)"
          }
         ]
        },
        "from": {
         "description": "The step output it carries, as \"<step>.<tensor>\".",
         "maxLength": 192,
         "minLength": 3,
         "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?\\.[A-Za-z0-9_][A-Za-z0-9_.:/-]*$",
         "type": "string"
        },
        "name": {
         "description": "The tensor's name (no dots).",
         "maxLength": 128,
         "minLength": 1,
         "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
         "type": "string"
        }
       },
       "required": [
        "name",
        "datatype",
        "dims",
        "from"
       ],
       "type": "object"
      },
      "maxItems": 16,
      "minItems": 1,
      "type": "array",
      "x-kubernetes-list-map-keys": [
       "name"
      ],
      "x-kubernetes-list-type": "map"
     },
     "placement": {
      "default": {
       "policy": "carbon-aware",
       "spread": 1
      },
      "description": "Where the model may run and how the region is chosen.",
      "properties": {
       "latencyPenalty": {
        "additionalProperties": {
         "maximum": 2000,
         "minimum": 0,
         "type": "number"
        },
        "description": "Region to a penalty in gCO2eq/kWh-equivalent added to its intensity, to prefer regions close to the users.",
        "maxProperties": 32,
        "type": "object",
        "x-kubernetes-validations": [
         {
          "message": "latencyPenalty keys must be region names (lower case letters, digits and '-', at most 63 characters)",
          "rule": "self.all(r, r.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'))"
         }
        ]
       },
       "maxIntensity": {
        "description": "Carbon intensity ceiling (gCO2eq/kWh); regions above it are not used.",
        "maximum": 2000,
        "minimum": 0,
        "type": "number"
       },
       "minDwellSeconds": {
        "description": "Stay at least this long in a region before moving again; the operator's default when unset.",
        "maximum": 604800,
        "minimum": 0,
        "type": "integer"
       },
       "minImprovementPercent": {
        "description": "Move only when the new region is at least this much cleaner; the operator's default when unset.",
        "maximum": 100,
        "minimum": 0,
        "type": "number"
       },
       "policy": {
        "default": "carbon-aware",
        "description": "carbon-aware (the cleanest feasible region wins, with hysteresis) or pinned (stay in the listed regions, in order of preference).",
        "enum": [
         "carbon-aware",
         "pinned"
        ],
        "type": "string"
       },
       "regions": {
        "description": "Allowed regions (values of the node label topology.kubernetes.io/region); any region of the cluster when unset.",
        "items": {
         "maxLength": 63,
         "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
         "type": "string"
        },
        "maxItems": 32,
        "type": "array",
        "x-kubernetes-list-type": "set"
       },
       "residency": {
        "description": "A jurisdiction every chosen region must lie in, such as eu or us (the operator's region table says which region lies where).",
        "maxLength": 32,
        "minLength": 2,
        "pattern": "^[a-z][a-z0-9-]*$",
        "type": "string"
       },
       "spread": {
        "default": 1,
        "description": "Regions to serve from at once, for availability.",
        "maximum": 16,
        "minimum": 1,
        "type": "integer"
       }
      },
      "type": "object",
      "x-kubernetes-validations": [
       {
        "fieldPath": ".regions",
        "message": "policy pinned needs regions",
        "reason": "FieldValueRequired",
        "rule": "self.policy != 'pinned' || (has(self.regions) && size(self.regions) > 0)"
       },
       {
        "fieldPath": ".spread",
        "message": "spread must not exceed the number of regions",
        "reason": "FieldValueInvalid",
        "rule": "!has(self.regions) || size(self.regions) == 0 || self.spread <= size(self.regions)"
       },
       {
        "fieldPath": ".latencyPenalty",
        "message": "latencyPenalty may only name regions listed in regions",
        "reason": "FieldValueInvalid",
        "rule": "!has(self.latencyPenalty) || !has(self.regions) || size(self.regions) == 0 || self.latencyPenalty.all(r, r in self.regions)"
       }
      ]
     },
     "pod": {
      "description": "Settings of the Triton server pods, merged into what the operator sets (its GPU toleration, its region and GPU-product node affinity, its labels and annotations). Each field left unset takes the chart's podDefaults.",
      "properties": {
       "affinity": {
        "description": "Scheduling affinity, as in a pod's spec. Required node affinity terms are each joined with the operator's region and GPU-product requirements (a node must satisfy both); preferred terms and pod (anti-)affinity are passed through as written.",
        "properties": {
         "nodeAffinity": {
          "description": "A core/v1 NodeAffinity (requiredDuringSchedulingIgnoredDuringExecution, preferredDuringSchedulingIgnoredDuringExecution); the API server checks it when the Deployment is applied.",
          "type": "object",
          "x-kubernetes-preserve-unknown-fields": true
         },
         "podAffinity": {
          "description": "A core/v1 PodAffinity, passed to the servers' pods as written.",
          "type": "object",
          "x-kubernetes-preserve-unknown-fields": true
         },
         "podAntiAffinity": {
          "description": "A core/v1 PodAntiAffinity, passed to the servers' pods as written.",
          "type": "object",
          "x-kubernetes-preserve-unknown-fields": true
         }
        },
        "type": "object"
       },
       "annotations": {
        "additionalProperties": {
         "maxLength": 4096,
         "type": "string"
        },
        "description": "Extra annotations on the servers' pods (not app.kubernetes.io/* or serving.smallfleet.io/*, which the operator sets).",
        "maxProperties": 32,
        "type": "object",
        "x-kubernetes-validations": [
         {
          "message": "keys must be label keys: an optional DNS prefix and '/', then a name of at most 63 letters, digits, '-', '_' or '.'",
          "rule": "self.all(k, size(k) <= 316 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))"
         }
        ]
       },
       "env": {
        "description": "Environment variables of the Triton container (plain values; not HOME or SMALLFLEET_*, which the operator sets).",
        "items": {
         "description": "One variable.",
         "properties": {
          "name": {
           "description": "The variable's name, a C identifier.",
           "maxLength": 128,
           "minLength": 1,
           "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
           "type": "string"
          },
          "value": {
           "description": "Its value; empty when unset.",
           "maxLength": 4096,
           "type": "string"
          }
         },
         "required": [
          "name"
         ],
         "type": "object"
        },
        "maxItems": 32,
        "type": "array",
        "x-kubernetes-list-map-keys": [
         "name"
        ],
        "x-kubernetes-list-type": "map"
       },
       "imagePullSecrets": {
        "description": "Secrets (in the model's namespace) for pulling the Triton and fetch images from a private registry.",
        "items": {
         "description": "One Secret reference.",
         "properties": {
          "name": {
           "description": "The Secret's name.",
           "maxLength": 253,
           "minLength": 1,
           "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
           "type": "string"
          }
         },
         "required": [
          "name"
         ],
         "type": "object"
        },
        "maxItems": 8,
        "type": "array",
        "x-kubernetes-list-map-keys": [
         "name"
        ],
        "x-kubernetes-list-type": "map"
       },
       "labels": {
        "additionalProperties": {
         "maxLength": 63,
         "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
         "type": "string"
        },
        "description": "Extra labels on the servers' pods (not app.kubernetes.io/* or serving.smallfleet.io/*, which the operator sets).",
        "maxProperties": 32,
        "type": "object",
        "x-kubernetes-validations": [
         {
          "message": "keys must be label keys: an optional DNS prefix and '/', then a name of at most 63 letters, digits, '-', '_' or '.'",
          "rule": "self.all(k, size(k) <= 316 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))"
         }
        ]
       },
       "nodeSelector": {
        "additionalProperties": {
         "maxLength": 63,
         "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
         "type": "string"
        },
        "description": "Node labels the servers' nodes must carry, beside the region and GPU product the operator requires.",
        "maxProperties": 16,
        "type": "object",
        "x-kubernetes-validations": [
         {
          "message": "keys must be label keys: an optional DNS prefix and '/', then a name of at most 63 letters, digits, '-', '_' or '.'",
          "rule": "self.all(k, size(k) <= 316 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))"
         }
        ]
       },
       "priorityClassName": {
        "description": "The PriorityClass of the servers' pods; the cluster's default when unset.",
        "maxLength": 253,
        "minLength": 1,
        "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        "type": "string"
       },
       "serviceAccountName": {
        "description": "The ServiceAccount the servers run as; the namespace's default when unset. Its token is not mounted: Triton does not call the API server.",
        "maxLength": 253,
        "minLength": 1,
        "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        "type": "string"
       },
       "tolerations": {
        "description": "Taints the servers tolerate, beside the GPU taint that GPU servers tolerate.",
        "items": {
         "description": "One toleration, as in a pod's spec.",
         "properties": {
          "effect": {
           "description": "The taint effect to tolerate; empty tolerates every effect.",
           "enum": [
            "",
            "NoSchedule",
            "PreferNoSchedule",
            "NoExecute"
           ],
           "type": "string"
          },
          "key": {
           "description": "The taint key; empty with operator Exists matches every taint.",
           "maxLength": 316,
           "pattern": "^(([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$",
           "type": "string"
          },
          "operator": {
           "description": "Equal (the default) or Exists.",
           "enum": [
            "Equal",
            "Exists"
           ],
           "type": "string"
          },
          "tolerationSeconds": {
           "description": "With effect NoExecute, how long the pod stays after the taint appears; unset stays for ever.",
           "format": "int64",
           "maximum": 31536000,
           "minimum": 0,
           "type": "integer"
          },
          "value": {
           "description": "The taint value, for operator Equal.",
           "maxLength": 63,
           "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
           "type": "string"
          }
         },
         "type": "object",
         "x-kubernetes-validations": [
          {
           "message": "a toleration with operator Exists must not have a value",
           "rule": "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''"
          },
          {
           "message": "a toleration without a key must have operator Exists (it then tolerates every taint)",
           "rule": "(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')"
          },
          {
           "message": "tolerationSeconds needs effect NoExecute",
           "rule": "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')"
          }
         ]
        },
        "maxItems": 16,
        "type": "array",
        "x-kubernetes-list-type": "atomic"
       }
      },
      "type": "object",
      "x-kubernetes-validations": [
       {
        "fieldPath": ".labels",
        "message": "pod.labels must not set the operator's own keys (app.kubernetes.io/* and serving.smallfleet.io/*): the operator selects and describes its pods by them",
        "reason": "FieldValueForbidden",
        "rule": "!has(self.labels) || self.labels.all(k, !k.startsWith('app.kubernetes.io/') && !k.startsWith('serving.smallfleet.io/'))"
       },
       {
        "fieldPath": ".annotations",
        "message": "pod.annotations must not set the operator's own keys (app.kubernetes.io/* and serving.smallfleet.io/*): the operator records the digest and config hash under them",
        "reason": "FieldValueForbidden",
        "rule": "!has(self.annotations) || self.annotations.all(k, !k.startsWith('app.kubernetes.io/') && !k.startsWith('serving.smallfleet.io/'))"
       },
       {
        "fieldPath": ".env",
        "message": "pod.env must not set HOME or SMALLFLEET_* variables: the operator sets them",
        "reason": "FieldValueForbidden",
        "rule": "!has(self.env) || self.env.all(e, e.name != 'HOME' && !e.name.startsWith('SMALLFLEET_'))"
       }
      ]
     },
     "resources": {
      "description": "What the pipeline's Triton server needs; by default the largest need of its steps' SmallModels.",
      "properties": {
       "cpu": {
        "default": "1",
        "description": "CPU request per replica, a Kubernetes quantity such as \"2\" or \"500m\".",
        "maxLength": 32,
        "x-kubernetes-int-or-string": true,
        "x-kubernetes-validations": [
         {
          "message": "cpu must be a positive Kubernetes quantity such as \"2\" or \"500m\"",
          "rule": "isQuantity(string(self)) && quantity(string(self)).isGreaterThan(quantity('0'))"
         }
        ]
       },
       "gpuProduct": {
        "description": "Required value of the node label nvidia.com/gpu.product, for example NVIDIA-L4; any GPU when unset.",
        "maxLength": 63,
        "minLength": 1,
        "pattern": "^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
        "type": "string"
       },
       "gpus": {
        "default": 1,
        "description": "GPUs (nvidia.com/gpu) per replica; 0 runs the model on CPU.",
        "maximum": 8,
        "minimum": 0,
        "type": "integer"
       },
       "memory": {
        "default": "2Gi",
        "description": "Memory request and limit per replica, a Kubernetes quantity such as \"2Gi\".",
        "maxLength": 32,
        "x-kubernetes-int-or-string": true,
        "x-kubernetes-validations": [
         {
          "message": "memory must be a positive Kubernetes quantity such as \"2Gi\"",
          "rule": "isQuantity(string(self)) && quantity(string(self)).isGreaterThan(quantity('0'))"
         }
        ]
       }
      },
      "type": "object",
      "x-kubernetes-validations": [
       {
        "fieldPath": ".gpuProduct",
        "message": "gpuProduct needs gpus > 0: a CPU model cannot ask for a GPU product",
        "reason": "FieldValueForbidden",
        "rule": "!has(self.gpuProduct) || self.gpus > 0"
       }
      ]
     },
     "scaling": {
      "default": {
       "maxReplicas": 1,
       "maxScaleDownStep": 1,
       "maxScaleUpStep": 4,
       "metric": "queueTime",
       "minReplicas": 1,
       "mode": "operator",
       "scaleDownStabilizationSeconds": 120,
       "scaleUpStabilizationSeconds": 0,
       "target": 50,
       "tolerance": 0.1
      },
      "description": "How the number of replicas follows the load.",
      "properties": {
       "carbonCap": {
        "description": "Lower the replica ceiling while the serving region's grid is dirty: above aboveIntensity, at most maxReplicas.",
        "properties": {
         "aboveIntensity": {
          "description": "Carbon intensity (gCO2eq/kWh) above which the cap applies.",
          "maximum": 2000,
          "minimum": 0,
          "type": "number"
         },
         "maxReplicas": {
          "description": "The replica ceiling while capped; within [minReplicas, maxReplicas].",
          "maximum": 1000,
          "minimum": 0,
          "type": "integer"
         }
        },
        "required": [
         "aboveIntensity",
         "maxReplicas"
        ],
        "type": "object"
       },
       "maxReplicas": {
        "default": 1,
        "description": "Most replicas (per model, across regions).",
        "maximum": 1000,
        "minimum": 1,
        "type": "integer"
       },
       "maxScaleDownStep": {
        "default": 1,
        "description": "Most replicas removed in one decision.",
        "maximum": 1000,
        "minimum": 1,
        "type": "integer"
       },
       "maxScaleUpStep": {
        "default": 4,
        "description": "Most replicas added in one decision.",
        "maximum": 1000,
        "minimum": 1,
        "type": "integer"
       },
       "metric": {
        "default": "queueTime",
        "description": "The Triton metric that drives scaling: queueTime (average queue milliseconds per request), pendingRequests (per replica), inferencesPerSecond (per replica) or gpuUtilization (percent).",
        "enum": [
         "queueTime",
         "pendingRequests",
         "inferencesPerSecond",
         "gpuUtilization"
        ],
        "type": "string"
       },
       "minReplicas": {
        "default": 1,
        "description": "Fewest replicas (per model, across regions); 0 only with mode keda or none.",
        "maximum": 1000,
        "minimum": 0,
        "type": "integer"
       },
       "mode": {
        "default": "operator",
        "description": "Who scales: operator (the operator, from Triton metrics), hpa (an autoscaling/v2 HorizontalPodAutoscaler on a per-pod custom metric), keda (a KEDA ScaledObject with a Prometheus trigger) or none (a fixed minReplicas).",
        "enum": [
         "operator",
         "hpa",
         "keda",
         "none"
        ],
        "type": "string"
       },
       "scaleDownStabilizationSeconds": {
        "default": 120,
        "description": "Look-back window before scaling down; the highest recommendation in it wins.",
        "maximum": 3600,
        "minimum": 0,
        "type": "integer"
       },
       "scaleUpStabilizationSeconds": {
        "default": 0,
        "description": "Look-back window before scaling up; the lowest recommendation in it wins, so a brief spike does not add replicas.",
        "maximum": 3600,
        "minimum": 0,
        "type": "integer"
       },
       "target": {
        "default": 50,
        "description": "The metric's target value, in the metric's unit.",
        "exclusiveMinimum": true,
        "maximum": 1000000,
        "minimum": 0,
        "type": "number"
       },
       "tolerance": {
        "default": 0.1,
        "description": "Relative deviation from target that causes no change (0.1 = 10%).",
        "maximum": 0.9,
        "minimum": 0,
        "type": "number"
       }
      },
      "type": "object",
      "x-kubernetes-validations": [
       {
        "fieldPath": ".minReplicas",
        "message": "minReplicas must not exceed maxReplicas",
        "reason": "FieldValueInvalid",
        "rule": "self.minReplicas <= self.maxReplicas"
       },
       {
        "fieldPath": ".minReplicas",
        "message": "minReplicas 0 (scale to zero) needs mode keda or none: the operator and an HPA read metrics from a running replica",
        "reason": "FieldValueInvalid",
        "rule": "self.minReplicas > 0 || self.mode == 'keda' || self.mode == 'none'"
       },
       {
        "fieldPath": ".target",
        "message": "target is a percentage for metric gpuUtilization and must be at most 100",
        "reason": "FieldValueInvalid",
        "rule": "self.metric != 'gpuUtilization' || self.target <= 100.0"
       },
       {
        "fieldPath": ".carbonCap.maxReplicas",
        "message": "carbonCap.maxReplicas must lie within [minReplicas, maxReplicas]",
        "reason": "FieldValueInvalid",
        "rule": "!has(self.carbonCap) || (self.carbonCap.maxReplicas >= self.minReplicas && self.carbonCap.maxReplicas <= self.maxReplicas)"
       },
       {
        "fieldPath": ".carbonCap",
        "message": "carbonCap needs a scaling mode: mode none keeps a fixed replica count",
        "reason": "FieldValueForbidden",
        "rule": "!has(self.carbonCap) || self.mode != 'none'"
       }
      ]
     },
     "steps": {
      "description": "The steps, in order: a step reads pipeline inputs and the outputs of steps listed before it.",
      "items": {
       "description": "One step, served by a SmallModel.",
       "properties": {
        "inputs": {
         "description": "The step model's input tensors and where each comes from.",
         "items": {
          "description": "One input of the step's model.",
          "properties": {
           "from": {
            "description": "A pipeline input (\"<input>\") or an earlier step's output (\"<step>.<tensor>\").",
            "maxLength": 192,
            "minLength": 1,
            "pattern": "^([A-Za-z_][A-Za-z0-9_]*|[a-z]([-a-z0-9]*[a-z0-9])?\\.[A-Za-z0-9_][A-Za-z0-9_.:/-]*)$",
            "type": "string"
           },
           "name": {
            "description": "The input tensor's name as the step's model knows it.",
            "maxLength": 128,
            "minLength": 1,
            "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.:/-]*$",
            "type": "string"
           }
          },
          "required": [
           "name",
           "from"
          ],
          "type": "object"
         },
         "maxItems": 16,
         "minItems": 1,
         "type": "array",
         "x-kubernetes-list-map-keys": [
          "name"
         ],
         "x-kubernetes-list-type": "map"
        },
        "model": {
         "description": "The name of a SmallModel in the pipeline's namespace.",
         "maxLength": 40,
         "minLength": 1,
         "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$",
         "type": "string"
        },
        "name": {
         "description": "The step's name, unique in the pipeline.",
         "maxLength": 63,
         "minLength": 1,
         "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$",
         "type": "string"
        }
       },
       "required": [
        "name",
        "model",
        "inputs"
       ],
       "type": "object"
      },
      "maxItems": 16,
      "minItems": 1,
      "type": "array",
      "x-kubernetes-list-map-keys": [
       "name"
      ],
      "x-kubernetes-list-type": "map"
     }
    },
    "required": [
     "inputs",
     "outputs",
     "steps"
    ],
    "type": "object",
    "x-kubernetes-validations": [
     {
      "fieldPath": ".steps",
      "message": "a step reads a pipeline input that does not exist: a from without a dot must name one of spec.inputs",
      "reason": "FieldValueInvalid",
      "rule": "self.steps.all(s, s.inputs.all(x, x.from.contains('.') || self.inputs.exists(p, p.name == x.from)))"
     },
     {
      "fieldPath": ".steps",
      "message": "a step reads from a step that is not listed before it: \"<step>.<tensor>\" must name an earlier step",
      "reason": "FieldValueInvalid",
      "rule": "self.steps.all(i, s, s.inputs.all(x, !x.from.contains('.') || self.steps.exists(j, t, j < i && x.from.startsWith(t.name + '.'))))"
     },
     {
      "fieldPath": ".outputs",
      "message": "an output comes from a step that does not exist: from must be \"<step>.<tensor>\" of one of spec.steps",
      "reason": "FieldValueInvalid",
      "rule": "self.outputs.all(o, self.steps.exists(s, o.from.startsWith(s.name + '.')))"
     },
     {
      "fieldPath": ".inputs",
      "message": "a pipeline input is not read by any step",
      "reason": "FieldValueInvalid",
      "rule": "self.inputs.all(p, self.steps.exists(s, s.inputs.exists(x, x.from == p.name)))"
     },
     {
      "fieldPath": ".outputs",
      "message": "an output has the name of a pipeline input: the ensemble's tensor names must be unique",
      "reason": "FieldValueInvalid",
      "rule": "self.outputs.all(o, !self.inputs.exists(p, p.name == o.name))"
     },
     {
      "fieldPath": ".outputs",
      "message": "two outputs come from the same step output: a Triton ensemble maps each step output to one tensor",
      "reason": "FieldValueInvalid",
      "rule": "self.outputs.all(o, self.outputs.exists_one(p, p.from == o.from))"
     },
     {
      "fieldPath": ".scaling.metric",
      "message": "scaling.metric gpuUtilization needs resources.gpus > 0: a CPU model has no GPU to measure",
      "reason": "FieldValueInvalid",
      "rule": "self.scaling.metric != 'gpuUtilization' || !has(self.resources) || self.resources.gpus > 0"
     }
    ]
   },
   "status": {
    "default": {
     "observedGeneration": 0
    },
    "description": "The observed state, written by the operator only.",
    "properties": {
     "artifact": {
      "description": "The artifact the replicas serve.",
      "properties": {
       "digest": {
        "description": "Its digest.",
        "maxLength": 71,
        "type": "string"
       },
       "verified": {
        "description": "True once an init container verified the digest.",
        "type": "boolean"
       }
      },
      "type": "object"
     },
     "carbon": {
      "description": "The carbon signal of the serving region(s) and the estimated emissions.",
      "properties": {
       "energyWatts": {
        "description": "Estimated power draw of the serving replicas, including the data-centre PUE.",
        "type": "number"
       },
       "gramsCO2ePerHour": {
        "description": "Estimated emissions, energyWatts \u00d7 intensity.",
        "type": "number"
       },
       "intensity": {
        "description": "Grid carbon intensity (gCO2eq/kWh) of the serving region, replica-weighted across regions.",
        "type": "number"
       },
       "observedAt": {
        "description": "When the provider measured or forecast the signal.",
        "format": "date-time",
        "type": "string"
       },
       "provider": {
        "description": "Where the signal came from (static, electricitymaps, watttime, ukgrid, carbonawaresdk).",
        "maxLength": 64,
        "type": "string"
       },
       "signalKind": {
        "description": "average or marginal intensity.",
        "maxLength": 32,
        "type": "string"
       },
       "stale": {
        "description": "True when the signal is older than the operator's maximum age.",
        "type": "boolean"
       }
      },
      "type": "object"
     },
     "conditions": {
      "description": "Ready, Reconciling, Stalled and specific conditions (Placed, ArtifactVerified, CarbonSignalStale, ScalingActive, Exposed), in the shape of metav1.Condition.",
      "items": {
       "description": "One condition.",
       "properties": {
        "lastTransitionTime": {
         "description": "When the status last changed.",
         "format": "date-time",
         "type": "string"
        },
        "message": {
         "description": "Why, for a person.",
         "maxLength": 32768,
         "type": "string"
        },
        "observedGeneration": {
         "description": "The metadata.generation the condition was set from.",
         "format": "int64",
         "minimum": 0,
         "type": "integer"
        },
        "reason": {
         "description": "Why, in one CamelCase word.",
         "maxLength": 1024,
         "minLength": 1,
         "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
         "type": "string"
        },
        "status": {
         "description": "True, False or Unknown.",
         "enum": [
          "True",
          "False",
          "Unknown"
         ],
         "type": "string"
        },
        "type": {
         "description": "The condition's type, in CamelCase.",
         "maxLength": 316,
         "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
         "type": "string"
        }
       },
       "required": [
        "type",
        "status",
        "lastTransitionTime",
        "reason",
        "message"
       ],
       "type": "object"
      },
      "maxItems": 16,
      "type": "array",
      "x-kubernetes-list-map-keys": [
       "type"
      ],
      "x-kubernetes-list-type": "map"
     },
     "desiredReplicas": {
      "description": "Triton replicas the operator wants, across regions.",
      "minimum": 0,
      "type": "integer"
     },
     "endpoint": {
      "description": "Deprecated: use url and grpcAddress. The DNS name of the Service in front of the Triton servers (a pooled model: its pool server's).",
      "maxLength": 253,
      "type": "string"
     },
     "grpcAddress": {
      "description": "The host:port of Triton's gRPC API inside the cluster (service inference.GRPCInferenceService).",
      "maxLength": 512,
      "type": "string"
     },
     "models": {
      "description": "The SmallModels the pipeline's steps use.",
      "items": {
       "maxLength": 40,
       "type": "string"
      },
      "maxItems": 16,
      "type": "array"
     },
     "observedGeneration": {
      "description": "The metadata.generation this status describes.",
      "format": "int64",
      "minimum": 0,
      "type": "integer"
     },
     "placement": {
      "description": "The placement decision.",
      "properties": {
       "excluded": {
        "description": "Regions that were not feasible, and why.",
        "items": {
         "description": "One excluded region.",
         "properties": {
          "message": {
           "description": "Why, for a person.",
           "maxLength": 1024,
           "type": "string"
          },
          "reason": {
           "description": "Why, in one CamelCase word (NotAllowed, Residency, NoCapacity, AboveMaxIntensity, NoSignal).",
           "maxLength": 64,
           "type": "string"
          },
          "region": {
           "description": "The region.",
           "maxLength": 63,
           "type": "string"
          }
         },
         "type": "object"
        },
        "maxItems": 64,
        "type": "array"
       },
       "lastMoveTime": {
        "description": "When the model last moved region.",
        "format": "date-time",
        "type": "string"
       },
       "regions": {
        "description": "The chosen regions.",
        "items": {
         "description": "One chosen region.",
         "properties": {
          "intensity": {
           "description": "Its carbon intensity (gCO2eq/kWh) at decision time.",
           "type": "number"
          },
          "region": {
           "description": "The region.",
           "maxLength": 63,
           "type": "string"
          },
          "replicas": {
           "description": "Replicas placed there.",
           "minimum": 0,
           "type": "integer"
          }
         },
         "type": "object"
        },
        "maxItems": 32,
        "type": "array"
       }
      },
      "type": "object"
     },
     "readyReplicas": {
      "description": "Triton replicas that are ready, across regions.",
      "minimum": 0,
      "type": "integer"
     },
     "region": {
      "description": "The regions currently serving, comma-joined (for the printer column).",
      "maxLength": 1024,
      "type": "string"
     },
     "regions": {
      "description": "The regions currently serving.",
      "items": {
       "maxLength": 63,
       "type": "string"
      },
      "maxItems": 32,
      "type": "array"
     },
     "replicas": {
      "description": "Triton replicas that exist, across regions.",
      "minimum": 0,
      "type": "integer"
     },
     "scaling": {
      "description": "The scaling state.",
      "properties": {
       "currentReplicas": {
        "description": "Replicas that exist.",
        "minimum": 0,
        "type": "integer"
       },
       "desiredReplicas": {
        "description": "Replicas the scaler wants.",
        "minimum": 0,
        "type": "integer"
       },
       "effectiveMaxReplicas": {
        "description": "maxReplicas after the carbon cap.",
        "minimum": 0,
        "type": "integer"
       },
       "lastDecision": {
        "description": "The scaler's last decision.",
        "properties": {
         "metric": {
          "description": "The metric it read.",
          "maxLength": 64,
          "type": "string"
         },
         "reason": {
          "description": "Why the replica count is what it is.",
          "maxLength": 1024,
          "type": "string"
         },
         "target": {
          "description": "The metric's target.",
          "type": "number"
         },
         "time": {
          "description": "When it was taken.",
          "format": "date-time",
          "type": "string"
         },
         "value": {
          "description": "The metric's value.",
          "type": "number"
         }
        },
        "type": "object"
       },
       "mode": {
        "description": "The scaling mode in force.",
        "maxLength": 16,
        "type": "string"
       },
       "pendingReplicas": {
        "description": "Replicas the scheduler cannot place yet (no room on a node that fits, such as no free GPU in the region).",
        "minimum": 0,
        "type": "integer"
       },
       "readyReplicas": {
        "description": "Replicas that are ready.",
        "minimum": 0,
        "type": "integer"
       }
      },
      "type": "object"
     },
     "url": {
      "description": "The base URL of Triton's HTTP API inside the cluster, as http://<service>.<namespace>.svc:8000 (a pooled model: its pool server's). Inference is POST <url>/v2/models/<name>/infer.",
      "maxLength": 2048,
      "type": "string"
     }
    },
    "type": "object"
   }
  },
  "required": [
   "spec"
  ],
  "type": "object",
  "x-kubernetes-validations": [
   {
    "message": "metadata.name must be a DNS-1035 label of at most 40 characters (lower case letters, digits and '-', starting with a letter): it names the ensemble in Triton and the pipeline's Service and Deployments",
    "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 40"
   }
  ]
 },
 "ServingPool": {
  "description": "ServingPool describes shared NVIDIA Triton servers that load many small models each, with explicit model control: the operator packs the SmallModels that name the pool into its servers by memory, and loads and unloads each one without restarting a server.",
  "properties": {
   "apiVersion": {
    "description": "APIVersion defines the versioned schema of this representation of an object.",
    "type": "string"
   },
   "kind": {
    "description": "Kind is a string value representing the REST resource this object represents.",
    "type": "string"
   },
   "metadata": {
    "type": "object"
   },
   "spec": {
    "description": "The pool's desired state, written by its owner.",
    "properties": {
     "backends": {
      "description": "The model formats the pool's servers load; a model of another format is refused with a reason. Empty allows every format.",
      "items": {
       "enum": [
        "onnx",
        "pytorch",
        "tensorrt",
        "python",
        "tensorflow"
       ],
       "type": "string"
      },
      "maxItems": 8,
      "type": "array",
      "x-kubernetes-list-type": "set"
     },
     "maxServers": {
      "default": 4,
      "description": "The most servers the pool grows to; a model that fits in none of them waits, and its status says why.",
      "maximum": 100,
      "minimum": 1,
      "type": "integer"
     },
     "minServers": {
      "default": 1,
      "description": "Servers kept running even when no model needs them.",
      "maximum": 100,
      "minimum": 0,
      "type": "integer"
     },
     "modelsPerServer": {
      "default": 50,
      "description": "The most models one server loads.",
      "maximum": 1000,
      "minimum": 1,
      "type": "integer"
     },
     "nodeSelector": {
      "additionalProperties": {
       "maxLength": 63,
       "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
       "type": "string"
      },
      "description": "Node labels the servers' nodes must carry, beside the region and GPU product.",
      "maxProperties": 32,
      "type": "object",
      "x-kubernetes-validations": [
       {
        "message": "keys must be label keys: an optional DNS prefix and '/', then a name of at most 63 letters, digits, '-', '_' or '.'",
        "rule": "self.all(k, size(k) <= 316 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))"
       }
      ]
     },
     "region": {
      "description": "The region (topology.kubernetes.io/region) whose nodes run the pool's servers; unset lets the scheduler choose.",
      "maxLength": 63,
      "minLength": 1,
      "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
      "type": "string"
     },
     "server": {
      "default": {},
      "description": "What each server of the pool gets, and so the room models are packed into.",
      "properties": {
       "cpu": {
        "default": "2",
        "description": "CPU request of each server (a quantity).",
        "maxLength": 32,
        "pattern": "^\\+?(\\d+(\\.\\d*)?|\\.\\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\\d+)?$",
        "type": "string"
       },
       "gpuMemory": {
        "description": "GPU memory per server that models may take (a quantity, for example 22Gi); each python-backend model on a GPU holds its own CUDA context (about 750 MiB) on top of its declared memory.",
        "maxLength": 32,
        "pattern": "^\\+?(\\d+(\\.\\d*)?|\\.\\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\\d+)?$",
        "type": "string"
       },
       "gpuProduct": {
        "description": "The GPU product (nvidia.com/gpu.product node label), for example NVIDIA-L4.",
        "maxLength": 63,
        "minLength": 1,
        "pattern": "^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
        "type": "string"
       },
       "gpus": {
        "default": 0,
        "description": "GPUs (nvidia.com/gpu) per server; 0 runs the pool on CPU.",
        "maximum": 8,
        "minimum": 0,
        "type": "integer"
       },
       "image": {
        "description": "The Triton image of the pool's servers; the operator's default when unset.",
        "maxLength": 512,
        "minLength": 1,
        "type": "string"
       },
       "memory": {
        "default": "8Gi",
        "description": "Host memory of each server (request and limit), which the declared memory of its models must fit in.",
        "maxLength": 32,
        "pattern": "^\\+?(\\d+(\\.\\d*)?|\\.\\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\\d+)?$",
        "type": "string"
       }
      },
      "type": "object",
      "x-kubernetes-validations": [
       {
        "fieldPath": ".gpuProduct",
        "message": "gpuProduct needs gpus > 0: a CPU pool cannot ask for a GPU product",
        "reason": "FieldValueForbidden",
        "rule": "!has(self.gpuProduct) || self.gpus > 0"
       },
       {
        "fieldPath": ".gpuMemory",
        "message": "gpuMemory needs gpus > 0: a CPU pool has no GPU memory to pack",
        "reason": "FieldValueForbidden",
        "rule": "!has(self.gpuMemory) || self.gpus > 0"
       }
      ]
     },
     "tolerations": {
      "description": "Taints the servers tolerate, beside the GPU taint that GPU pools tolerate.",
      "items": {
       "description": "One toleration, as in a pod's spec.",
       "properties": {
        "effect": {
         "description": "The taint effect to tolerate; empty tolerates every effect.",
         "enum": [
          "",
          "NoSchedule",
          "PreferNoSchedule",
          "NoExecute"
         ],
         "type": "string"
        },
        "key": {
         "description": "The taint key; empty with operator Exists matches every taint.",
         "maxLength": 316,
         "pattern": "^(([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$",
         "type": "string"
        },
        "operator": {
         "description": "Equal (the default) or Exists.",
         "enum": [
          "Equal",
          "Exists"
         ],
         "type": "string"
        },
        "value": {
         "description": "The taint value, for operator Equal.",
         "maxLength": 63,
         "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
         "type": "string"
        }
       },
       "type": "object",
       "x-kubernetes-validations": [
        {
         "message": "a toleration with operator Exists must not have a value",
         "rule": "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''"
        },
        {
         "message": "a toleration without a key must have operator Exists (it then tolerates every taint)",
         "rule": "(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')"
        }
       ]
      },
      "maxItems": 16,
      "type": "array"
     }
    },
    "type": "object",
    "x-kubernetes-validations": [
     {
      "fieldPath": ".minServers",
      "message": "minServers must not exceed maxServers",
      "rule": "self.minServers <= self.maxServers"
     }
    ]
   },
   "status": {
    "default": {
     "observedGeneration": 0
    },
    "description": "The observed state, written by the operator only.",
    "properties": {
     "conditions": {
      "description": "Ready, Reconciling and Stalled, in the shape of metav1.Condition.",
      "items": {
       "description": "One condition.",
       "properties": {
        "lastTransitionTime": {
         "description": "When the status last changed.",
         "format": "date-time",
         "type": "string"
        },
        "message": {
         "description": "Why, for a person.",
         "maxLength": 32768,
         "type": "string"
        },
        "observedGeneration": {
         "description": "The metadata.generation the condition was set from.",
         "format": "int64",
         "minimum": 0,
         "type": "integer"
        },
        "reason": {
         "description": "Why, in one CamelCase word.",
         "maxLength": 1024,
         "minLength": 1,
         "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
         "type": "string"
        },
        "status": {
         "description": "True, False or Unknown.",
         "enum": [
          "True",
          "False",
          "Unknown"
         ],
         "type": "string"
        },
        "type": {
         "description": "The condition's type, in CamelCase.",
         "maxLength": 316,
         "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
         "type": "string"
        }
       },
       "required": [
        "type",
        "status",
        "lastTransitionTime",
        "reason",
        "message"
       ],
       "type": "object"
      },
      "maxItems": 16,
      "type": "array",
      "x-kubernetes-list-map-keys": [
       "type"
      ],
      "x-kubernetes-list-type": "map"
     },
     "models": {
      "description": "SmallModels that name the pool.",
      "minimum": 0,
      "type": "integer"
     },
     "observedGeneration": {
      "description": "The metadata.generation this status describes.",
      "format": "int64",
      "minimum": 0,
      "type": "integer"
     },
     "readyModels": {
      "description": "Those a server of the pool reports READY.",
      "minimum": 0,
      "type": "integer"
     },
     "readyServers": {
      "description": "Servers whose Triton reports ready.",
      "minimum": 0,
      "type": "integer"
     },
     "serverModels": {
      "description": "What each server holds.",
      "items": {
       "description": "One server and what packing gave it.",
       "properties": {
        "memory": {
         "description": "Declared memory of those models.",
         "maxLength": 32,
         "type": "string"
        },
        "models": {
         "description": "Models assigned to it.",
         "minimum": 0,
         "type": "integer"
        },
        "server": {
         "description": "The server (pod) name.",
         "maxLength": 253,
         "type": "string"
        }
       },
       "type": "object"
      },
      "maxItems": 100,
      "type": "array"
     },
     "servers": {
      "description": "Servers the pool runs now.",
      "minimum": 0,
      "type": "integer"
     },
     "waiting": {
      "description": "Models that fit in no server of the pool.",
      "minimum": 0,
      "type": "integer"
     }
    },
    "type": "object"
   }
  },
  "required": [
   "spec"
  ],
  "type": "object",
  "x-kubernetes-validations": [
   {
    "message": "metadata.name must be a DNS-1035 label of at most 40 characters (lower case letters, digits and '-', starting with a letter): it names the pool's StatefulSet and Service",
    "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 40"
   }
  ]
 },
 "SmallModel": {
  "description": "SmallModel is one small model served by NVIDIA Triton Inference Server: where its artifact lives, how Triton serves it, what it needs, how it scales, where it may run, and its model card.",
  "properties": {
   "apiVersion": {
    "description": "APIVersion defines the versioned schema of this representation of an object.",
    "type": "string"
   },
   "kind": {
    "description": "Kind is a string value representing the REST resource this object represents.",
    "type": "string"
   },
   "metadata": {
    "type": "object"
   },
   "spec": {
    "description": "The model's desired state, written by its owner.",
    "properties": {
     "card": {
      "description": "The model card that travels with every model.",
      "properties": {
       "description": {
        "description": "What the model does.",
        "maxLength": 4096,
        "minLength": 1,
        "type": "string"
       },
       "evaluation": {
        "description": "Evaluation results.",
        "items": {
         "description": "One evaluation result.",
         "properties": {
          "dataset": {
           "description": "The evaluation data set.",
           "maxLength": 256,
           "type": "string"
          },
          "metric": {
           "description": "The metric's name, such as accuracy or nDCG@10.",
           "maxLength": 128,
           "minLength": 1,
           "type": "string"
          },
          "value": {
           "description": "The result, as text (quote numbers in YAML).",
           "maxLength": 64,
           "minLength": 1,
           "type": "string"
          }
         },
         "required": [
          "metric",
          "value"
         ],
         "type": "object"
        },
        "maxItems": 32,
        "type": "array",
        "x-kubernetes-list-type": "atomic"
       },
       "intendedUse": {
        "description": "What the model is meant for.",
        "maxLength": 4096,
        "type": "string"
       },
       "license": {
        "description": "The model's license, as an SPDX identifier where one exists.",
        "maxLength": 128,
        "minLength": 1,
        "type": "string"
       },
       "limitations": {
        "description": "Known limitations, biases and out-of-scope uses.",
        "maxLength": 4096,
        "type": "string"
       },
       "owner": {
        "description": "Who answers for the model (a team or an email address).",
        "maxLength": 256,
        "minLength": 1,
        "type": "string"
       },
       "trainingData": {
        "description": "What the model was trained on.",
        "maxLength": 4096,
        "type": "string"
       }
      },
      "required": [
       "owner",
       "license",
       "description"
      ],
      "type": "object"
     },
     "expose": {
      "description": "Reach the model from outside the cluster through a Gateway API Gateway: the operator renders an HTTPRoute (and, with grpc.enabled, a GRPCRoute) from the gateway to the model's Service and reports whether the gateway accepted them as the Exposed condition. Needs the Gateway API CRDs (gateway.networking.k8s.io/v1) and a gateway controller; removing this field deletes the routes.",
      "properties": {
       "gateway": {
        "description": "The Gateway the routes attach to (their parentRef).",
        "properties": {
         "name": {
          "description": "The Gateway's name.",
          "maxLength": 253,
          "minLength": 1,
          "type": "string"
         },
         "namespace": {
          "description": "The Gateway's namespace; the model's own when unset. Its listeners must allow routes from the model's namespace (allowedRoutes), or the route is not Accepted.",
          "maxLength": 63,
          "minLength": 1,
          "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
          "type": "string"
         },
         "sectionName": {
          "description": "The Gateway listener the HTTPRoute attaches to; every listener that allows it when unset.",
          "maxLength": 253,
          "minLength": 1,
          "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
          "type": "string"
         }
        },
        "required": [
         "name"
        ],
        "type": "object"
       },
       "grpc": {
        "default": {
         "enabled": false
        },
        "description": "The GRPCRoute to Triton's gRPC API (port 8001, service inference.GRPCInferenceService). gRPC names the model inside each request, so the route matches the whole service: give it host names (or a listener) of its own when several models share a gateway, and apart from the HTTPRoute's, which a gateway may not share between an HTTPRoute and a GRPCRoute.",
        "properties": {
         "enabled": {
          "default": false,
          "description": "Render the GRPCRoute.",
          "type": "boolean"
         },
         "hostnames": {
          "description": "Host names of the GRPCRoute; the shared hostnames when empty.",
          "items": {
           "maxLength": 253,
           "minLength": 1,
           "pattern": "^(\\*\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
           "type": "string"
          },
          "maxItems": 16,
          "type": "array",
          "x-kubernetes-list-type": "set"
         },
         "sectionName": {
          "description": "The Gateway listener the GRPCRoute attaches to; gateway.sectionName when unset.",
          "maxLength": 253,
          "minLength": 1,
          "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
          "type": "string"
         }
        },
        "type": "object"
       },
       "hostnames": {
        "description": "Host names the routes answer for (a leading \"*.\" is a wildcard); every host the listener accepts when empty.",
        "items": {
         "maxLength": 253,
         "minLength": 1,
         "pattern": "^(\\*\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
         "type": "string"
        },
        "maxItems": 16,
        "type": "array",
        "x-kubernetes-list-type": "set"
       },
       "http": {
        "default": {
         "enabled": true
        },
        "description": "The HTTPRoute to Triton's HTTP/REST API (port 8000, the KServe v2 protocol).",
        "properties": {
         "enabled": {
          "default": true,
          "description": "Render the HTTPRoute.",
          "type": "boolean"
         },
         "pathPrefix": {
          "description": "The path prefix the route matches; /v2/models/<name> (this model's inference, metadata and readiness paths) when unset.",
          "maxLength": 1024,
          "minLength": 1,
          "pattern": "^/[^?#]*$",
          "type": "string"
         }
        },
        "type": "object"
       }
      },
      "required": [
       "gateway"
      ],
      "type": "object",
      "x-kubernetes-validations": [
       {
        "message": "expose needs http or grpc enabled: with both off there is nothing to route",
        "rule": "self.http.enabled || self.grpc.enabled"
       }
      ]
     },
     "model": {
      "description": "The model artifact and how to verify it.",
      "properties": {
       "credentials": {
        "description": "How the fetch step authenticates to a private store. The credentials reach only the init container that fetches the artifact (from a Secret in the model's namespace, through secretKeyRef or a secret volume, or from the pod's own identity), never the Triton container, and the operator itself never reads the Secret. A pooled model (serving.pool) cannot have credentials.",
        "properties": {
         "gs": {
          "description": "How to authenticate to Google Cloud Storage's JSON API.",
          "properties": {
           "endpoint": {
            "description": "The JSON API's endpoint (default: https://storage.googleapis.com).",
            "maxLength": 2048,
            "pattern": "^https?://[^/?#@]+/?$",
            "type": "string"
           },
           "workloadIdentity": {
            "default": false,
            "description": "Ask the metadata server for the pod's service account token (GKE Workload Identity) instead of signing with a key from secretRef.",
            "type": "boolean"
           }
          },
          "type": "object"
         },
         "https": {
          "description": "How an https:// artifact is authenticated with the Secret's keys.",
          "properties": {
           "auth": {
            "default": "bearer",
            "description": "bearer: Authorization: Bearer <token>; basic: HTTP Basic with username and password. Never sent over plain http:// except to a loopback address.",
            "enum": [
             "bearer",
             "basic"
            ],
            "type": "string"
           }
          },
          "type": "object"
         },
         "s3": {
          "description": "Where and how to sign S3 requests (AWS Signature Version 4).",
          "properties": {
           "endpoint": {
            "description": "An S3-compatible endpoint, as https://host[:port] (MinIO, Ceph, a regional or FIPS endpoint); objects are then addressed path-style. Default: AWS, https://BUCKET.s3.REGION.amazonaws.com.",
            "maxLength": 2048,
            "pattern": "^https?://[^/?#@]+/?$",
            "type": "string"
           },
           "region": {
            "default": "us-east-1",
            "description": "The region in the signature's scope.",
            "maxLength": 64,
            "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
            "type": "string"
           },
           "webIdentity": {
            "description": "IRSA-style: the pod's projected service-account token is exchanged for temporary keys with STS AssumeRoleWithWebIdentity (AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE, as the AWS SDKs read them). The pod runs as spec.pod.serviceAccountName.",
            "properties": {
             "audience": {
              "default": "sts.amazonaws.com",
              "description": "The audience of the projected token.",
              "maxLength": 256,
              "type": "string"
             },
             "roleArn": {
              "description": "The role to assume, arn:PARTITION:iam::ACCOUNT:role/NAME.",
              "maxLength": 2048,
              "pattern": "^arn:[-a-z]+:iam::[0-9]*:role/.+$",
              "type": "string"
             },
             "stsEndpoint": {
              "description": "STS endpoint (default: https://sts.REGION.amazonaws.com).",
              "maxLength": 2048,
              "pattern": "^https?://[^/?#@]+/?$",
              "type": "string"
             }
            },
            "required": [
             "roleArn"
            ],
            "type": "object"
           }
          },
          "type": "object"
         },
         "secretRef": {
          "description": "A Secret in the model's namespace. For s3:// its keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and, optionally, AWS_SESSION_TOKEN); for gs:// its key key.json, a service-account key file; for https:// its key token (bearer) or username and password (basic).",
          "properties": {
           "name": {
            "description": "The Secret's name.",
            "maxLength": 253,
            "minLength": 1,
            "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
            "type": "string"
           }
          },
          "required": [
           "name"
          ],
          "type": "object"
         }
        },
        "type": "object",
        "x-kubernetes-validations": [
         {
          "message": "credentials need secretRef, s3.webIdentity or gs.workloadIdentity: name where the fetch step's identity comes from",
          "rule": "has(self.secretRef) || (has(self.s3) && has(self.s3.webIdentity)) || (has(self.gs) && self.gs.workloadIdentity)"
         },
         {
          "message": "secretRef and a workload identity (s3.webIdentity, gs.workloadIdentity) exclude each other: name one source of credentials",
          "rule": "!has(self.secretRef) || !((has(self.s3) && has(self.s3.webIdentity)) || (has(self.gs) && self.gs.workloadIdentity))"
         }
        ]
       },
       "digest": {
        "description": "The artifact's sha256 digest, \"sha256:\" followed by 64 lower-case hex digits. The init container refuses an artifact whose digest differs.",
        "maxLength": 71,
        "pattern": "^sha256:[a-f0-9]{64}$",
        "type": "string"
       },
       "format": {
        "description": "The artifact's format, which selects the Triton backend (onnx: onnxruntime, pytorch: pytorch (TorchScript), tensorflow: tensorflow (SavedModel), tensorrt: tensorrt (plan), python: python).",
        "enum": [
         "onnx",
         "pytorch",
         "tensorflow",
         "tensorrt",
         "python"
        ],
        "type": "string"
       },
       "parameterCount": {
        "description": "The number of model parameters, for the model card and capacity planning.",
        "format": "int64",
        "maximum": 1000000000000,
        "minimum": 1,
        "type": "integer"
       },
       "uri": {
        "description": "Where the artifact is downloaded from: s3://bucket/key, gs://bucket/key, https://host/path, http://host/path or pvc://claim/path (a file or directory on a PersistentVolumeClaim in the model's namespace).",
        "maxLength": 2048,
        "minLength": 1,
        "type": "string",
        "x-kubernetes-validations": [
         {
          "message": "uri must start with s3://, gs://, https://, http:// or pvc://",
          "rule": "self.matches('^(s3|gs|https|http|pvc)://')"
         },
         {
          "message": "s3://, gs:// and pvc:// URIs need a bucket or claim and a path after it, as in pvc://claim/path",
          "rule": "!self.matches('^(s3|gs|pvc)://') || self.matches('^(s3|gs|pvc)://[^/]+/[^/].*$')"
         },
         {
          "message": "http:// and https:// URIs need a host",
          "rule": "!self.matches('^https?://') || self.matches('^https?://[^/]+')"
         }
        ]
       }
      },
      "required": [
       "uri",
       "digest",
       "format"
      ],
      "type": "object",
      "x-kubernetes-validations": [
       {
        "fieldPath": ".credentials",
        "message": "credentials do not apply to pvc:// artifacts: the claim is mounted, not downloaded",
        "reason": "FieldValueForbidden",
        "rule": "!has(self.credentials) || !self.uri.startsWith('pvc://')"
       },
       {
        "fieldPath": ".credentials.s3",
        "message": "credentials.s3 needs an s3:// uri",
        "reason": "FieldValueForbidden",
        "rule": "!has(self.credentials) || !has(self.credentials.s3) || self.uri.startsWith('s3://')"
       },
       {
        "fieldPath": ".credentials.gs",
        "message": "credentials.gs needs a gs:// uri",
        "reason": "FieldValueForbidden",
        "rule": "!has(self.credentials) || !has(self.credentials.gs) || self.uri.startsWith('gs://')"
       },
       {
        "fieldPath": ".credentials.https",
        "message": "credentials.https needs an https:// or http:// uri",
        "reason": "FieldValueForbidden",
        "rule": "!has(self.credentials) || !has(self.credentials.https) || self.uri.matches('^https?://')"
       }
      ]
     },
     "placement": {
      "default": {
       "policy": "carbon-aware",
       "spread": 1
      },
      "description": "Where the model may run and how the region is chosen.",
      "properties": {
       "latencyPenalty": {
        "additionalProperties": {
         "maximum": 2000,
         "minimum": 0,
         "type": "number"
        },
        "description": "Region to a penalty in gCO2eq/kWh-equivalent added to its intensity, to prefer regions close to the users.",
        "maxProperties": 32,
        "type": "object",
        "x-kubernetes-validations": [
         {
          "message": "latencyPenalty keys must be region names (lower case letters, digits and '-', at most 63 characters)",
          "rule": "self.all(r, r.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'))"
         }
        ]
       },
       "maxIntensity": {
        "description": "Carbon intensity ceiling (gCO2eq/kWh); regions above it are not used.",
        "maximum": 2000,
        "minimum": 0,
        "type": "number"
       },
       "minDwellSeconds": {
        "description": "Stay at least this long in a region before moving again; the operator's default when unset.",
        "maximum": 604800,
        "minimum": 0,
        "type": "integer"
       },
       "minImprovementPercent": {
        "description": "Move only when the new region is at least this much cleaner; the operator's default when unset.",
        "maximum": 100,
        "minimum": 0,
        "type": "number"
       },
       "policy": {
        "default": "carbon-aware",
        "description": "carbon-aware (the cleanest feasible region wins, with hysteresis) or pinned (stay in the listed regions, in order of preference).",
        "enum": [
         "carbon-aware",
         "pinned"
        ],
        "type": "string"
       },
       "regions": {
        "description": "Allowed regions (values of the node label topology.kubernetes.io/region); any region of the cluster when unset.",
        "items": {
         "maxLength": 63,
         "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
         "type": "string"
        },
        "maxItems": 32,
        "type": "array",
        "x-kubernetes-list-type": "set"
       },
       "residency": {
        "description": "A jurisdiction every chosen region must lie in, such as eu or us (the operator's region table says which region lies where).",
        "maxLength": 32,
        "minLength": 2,
        "pattern": "^[a-z][a-z0-9-]*$",
        "type": "string"
       },
       "spread": {
        "default": 1,
        "description": "Regions to serve from at once, for availability.",
        "maximum": 16,
        "minimum": 1,
        "type": "integer"
       }
      },
      "type": "object",
      "x-kubernetes-validations": [
       {
        "fieldPath": ".regions",
        "message": "policy pinned needs regions",
        "reason": "FieldValueRequired",
        "rule": "self.policy != 'pinned' || (has(self.regions) && size(self.regions) > 0)"
       },
       {
        "fieldPath": ".spread",
        "message": "spread must not exceed the number of regions",
        "reason": "FieldValueInvalid",
        "rule": "!has(self.regions) || size(self.regions) == 0 || self.spread <= size(self.regions)"
       },
       {
        "fieldPath": ".latencyPenalty",
        "message": "latencyPenalty may only name regions listed in regions",
        "reason": "FieldValueInvalid",
        "rule": "!has(self.latencyPenalty) || !has(self.regions) || size(self.regions) == 0 || self.latencyPenalty.all(r, r in self.regions)"
       }
      ]
     },
     "pod": {
      "description": "Settings of the Triton server pods, merged into what the operator sets (its GPU toleration, its region and GPU-product node affinity, its labels and annotations). Each field left unset takes the chart's podDefaults.",
      "properties": {
       "affinity": {
        "description": "Scheduling affinity, as in a pod's spec. Required node affinity terms are each joined with the operator's region and GPU-product requirements (a node must satisfy both); preferred terms and pod (anti-)affinity are passed through as written.",
        "properties": {
         "nodeAffinity": {
          "description": "A core/v1 NodeAffinity (requiredDuringSchedulingIgnoredDuringExecution, preferredDuringSchedulingIgnoredDuringExecution); the API server checks it when the Deployment is applied.",
          "type": "object",
          "x-kubernetes-preserve-unknown-fields": true
         },
         "podAffinity": {
          "description": "A core/v1 PodAffinity, passed to the servers' pods as written.",
          "type": "object",
          "x-kubernetes-preserve-unknown-fields": true
         },
         "podAntiAffinity": {
          "description": "A core/v1 PodAntiAffinity, passed to the servers' pods as written.",
          "type": "object",
          "x-kubernetes-preserve-unknown-fields": true
         }
        },
        "type": "object"
       },
       "annotations": {
        "additionalProperties": {
         "maxLength": 4096,
         "type": "string"
        },
        "description": "Extra annotations on the servers' pods (not app.kubernetes.io/* or serving.smallfleet.io/*, which the operator sets).",
        "maxProperties": 32,
        "type": "object",
        "x-kubernetes-validations": [
         {
          "message": "keys must be label keys: an optional DNS prefix and '/', then a name of at most 63 letters, digits, '-', '_' or '.'",
          "rule": "self.all(k, size(k) <= 316 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))"
         }
        ]
       },
       "env": {
        "description": "Environment variables of the Triton container (plain values; not HOME or SMALLFLEET_*, which the operator sets).",
        "items": {
         "description": "One variable.",
         "properties": {
          "name": {
           "description": "The variable's name, a C identifier.",
           "maxLength": 128,
           "minLength": 1,
           "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
           "type": "string"
          },
          "value": {
           "description": "Its value; empty when unset.",
           "maxLength": 4096,
           "type": "string"
          }
         },
         "required": [
          "name"
         ],
         "type": "object"
        },
        "maxItems": 32,
        "type": "array",
        "x-kubernetes-list-map-keys": [
         "name"
        ],
        "x-kubernetes-list-type": "map"
       },
       "imagePullSecrets": {
        "description": "Secrets (in the model's namespace) for pulling the Triton and fetch images from a private registry.",
        "items": {
         "description": "One Secret reference.",
         "properties": {
          "name": {
           "description": "The Secret's name.",
           "maxLength": 253,
           "minLength": 1,
           "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
           "type": "string"
          }
         },
         "required": [
          "name"
         ],
         "type": "object"
        },
        "maxItems": 8,
        "type": "array",
        "x-kubernetes-list-map-keys": [
         "name"
        ],
        "x-kubernetes-list-type": "map"
       },
       "labels": {
        "additionalProperties": {
         "maxLength": 63,
         "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
         "type": "string"
        },
        "description": "Extra labels on the servers' pods (not app.kubernetes.io/* or serving.smallfleet.io/*, which the operator sets).",
        "maxProperties": 32,
        "type": "object",
        "x-kubernetes-validations": [
         {
          "message": "keys must be label keys: an optional DNS prefix and '/', then a name of at most 63 letters, digits, '-', '_' or '.'",
          "rule": "self.all(k, size(k) <= 316 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))"
         }
        ]
       },
       "nodeSelector": {
        "additionalProperties": {
         "maxLength": 63,
         "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
         "type": "string"
        },
        "description": "Node labels the servers' nodes must carry, beside the region and GPU product the operator requires.",
        "maxProperties": 16,
        "type": "object",
        "x-kubernetes-validations": [
         {
          "message": "keys must be label keys: an optional DNS prefix and '/', then a name of at most 63 letters, digits, '-', '_' or '.'",
          "rule": "self.all(k, size(k) <= 316 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))"
         }
        ]
       },
       "priorityClassName": {
        "description": "The PriorityClass of the servers' pods; the cluster's default when unset.",
        "maxLength": 253,
        "minLength": 1,
        "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        "type": "string"
       },
       "serviceAccountName": {
        "description": "The ServiceAccount the servers run as; the namespace's default when unset. Its token is not mounted: Triton does not call the API server.",
        "maxLength": 253,
        "minLength": 1,
        "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        "type": "string"
       },
       "tolerations": {
        "description": "Taints the servers tolerate, beside the GPU taint that GPU servers tolerate.",
        "items": {
         "description": "One toleration, as in a pod's spec.",
         "properties": {
          "effect": {
           "description": "The taint effect to tolerate; empty tolerates every effect.",
           "enum": [
            "",
            "NoSchedule",
            "PreferNoSchedule",
            "NoExecute"
           ],
           "type": "string"
          },
          "key": {
           "description": "The taint key; empty with operator Exists matches every taint.",
           "maxLength": 316,
           "pattern": "^(([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$",
           "type": "string"
          },
          "operator": {
           "description": "Equal (the default) or Exists.",
           "enum": [
            "Equal",
            "Exists"
           ],
           "type": "string"
          },
          "tolerationSeconds": {
           "description": "With effect NoExecute, how long the pod stays after the taint appears; unset stays for ever.",
           "format": "int64",
           "maximum": 31536000,
           "minimum": 0,
           "type": "integer"
          },
          "value": {
           "description": "The taint value, for operator Equal.",
           "maxLength": 63,
           "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
           "type": "string"
          }
         },
         "type": "object",
         "x-kubernetes-validations": [
          {
           "message": "a toleration with operator Exists must not have a value",
           "rule": "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''"
          },
          {
           "message": "a toleration without a key must have operator Exists (it then tolerates every taint)",
           "rule": "(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')"
          },
          {
           "message": "tolerationSeconds needs effect NoExecute",
           "rule": "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')"
          }
         ]
        },
        "maxItems": 16,
        "type": "array",
        "x-kubernetes-list-type": "atomic"
       }
      },
      "type": "object",
      "x-kubernetes-validations": [
       {
        "fieldPath": ".labels",
        "message": "pod.labels must not set the operator's own keys (app.kubernetes.io/* and serving.smallfleet.io/*): the operator selects and describes its pods by them",
        "reason": "FieldValueForbidden",
        "rule": "!has(self.labels) || self.labels.all(k, !k.startsWith('app.kubernetes.io/') && !k.startsWith('serving.smallfleet.io/'))"
       },
       {
        "fieldPath": ".annotations",
        "message": "pod.annotations must not set the operator's own keys (app.kubernetes.io/* and serving.smallfleet.io/*): the operator records the digest and config hash under them",
        "reason": "FieldValueForbidden",
        "rule": "!has(self.annotations) || self.annotations.all(k, !k.startsWith('app.kubernetes.io/') && !k.startsWith('serving.smallfleet.io/'))"
       },
       {
        "fieldPath": ".env",
        "message": "pod.env must not set HOME or SMALLFLEET_* variables: the operator sets them",
        "reason": "FieldValueForbidden",
        "rule": "!has(self.env) || self.env.all(e, e.name != 'HOME' && !e.name.startsWith('SMALLFLEET_'))"
       }
      ]
     },
     "resources": {
      "default": {},
      "description": "What one Triton server for this model needs.",
      "properties": {
       "cpu": {
        "default": "1",
        "description": "CPU request per replica, a Kubernetes quantity such as \"2\" or \"500m\".",
        "maxLength": 32,
        "x-kubernetes-int-or-string": true,
        "x-kubernetes-validations": [
         {
          "message": "cpu must be a positive Kubernetes quantity such as \"2\" or \"500m\"",
          "rule": "isQuantity(string(self)) && quantity(string(self)).isGreaterThan(quantity('0'))"
         }
        ]
       },
       "gpuProduct": {
        "description": "Required value of the node label nvidia.com/gpu.product, for example NVIDIA-L4; any GPU when unset.",
        "maxLength": 63,
        "minLength": 1,
        "pattern": "^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
        "type": "string"
       },
       "gpus": {
        "default": 1,
        "description": "GPUs (nvidia.com/gpu) per replica; 0 runs the model on CPU.",
        "maximum": 8,
        "minimum": 0,
        "type": "integer"
       },
       "memory": {
        "default": "2Gi",
        "description": "Memory request and limit per replica, a Kubernetes quantity such as \"2Gi\".",
        "maxLength": 32,
        "x-kubernetes-int-or-string": true,
        "x-kubernetes-validations": [
         {
          "message": "memory must be a positive Kubernetes quantity such as \"2Gi\"",
          "rule": "isQuantity(string(self)) && quantity(string(self)).isGreaterThan(quantity('0'))"
         }
        ]
       }
      },
      "type": "object",
      "x-kubernetes-validations": [
       {
        "fieldPath": ".gpuProduct",
        "message": "gpuProduct needs gpus > 0: a CPU model cannot ask for a GPU product",
        "reason": "FieldValueForbidden",
        "rule": "!has(self.gpuProduct) || self.gpus > 0"
       }
      ]
     },
     "scaling": {
      "default": {
       "maxReplicas": 1,
       "maxScaleDownStep": 1,
       "maxScaleUpStep": 4,
       "metric": "queueTime",
       "minReplicas": 1,
       "mode": "operator",
       "scaleDownStabilizationSeconds": 120,
       "scaleUpStabilizationSeconds": 0,
       "target": 50,
       "tolerance": 0.1
      },
      "description": "How the number of replicas follows the load.",
      "properties": {
       "carbonCap": {
        "description": "Lower the replica ceiling while the serving region's grid is dirty: above aboveIntensity, at most maxReplicas.",
        "properties": {
         "aboveIntensity": {
          "description": "Carbon intensity (gCO2eq/kWh) above which the cap applies.",
          "maximum": 2000,
          "minimum": 0,
          "type": "number"
         },
         "maxReplicas": {
          "description": "The replica ceiling while capped; within [minReplicas, maxReplicas].",
          "maximum": 1000,
          "minimum": 0,
          "type": "integer"
         }
        },
        "required": [
         "aboveIntensity",
         "maxReplicas"
        ],
        "type": "object"
       },
       "maxReplicas": {
        "default": 1,
        "description": "Most replicas (per model, across regions).",
        "maximum": 1000,
        "minimum": 1,
        "type": "integer"
       },
       "maxScaleDownStep": {
        "default": 1,
        "description": "Most replicas removed in one decision.",
        "maximum": 1000,
        "minimum": 1,
        "type": "integer"
       },
       "maxScaleUpStep": {
        "default": 4,
        "description": "Most replicas added in one decision.",
        "maximum": 1000,
        "minimum": 1,
        "type": "integer"
       },
       "metric": {
        "default": "queueTime",
        "description": "The Triton metric that drives scaling: queueTime (average queue milliseconds per request), pendingRequests (per replica), inferencesPerSecond (per replica) or gpuUtilization (percent).",
        "enum": [
         "queueTime",
         "pendingRequests",
         "inferencesPerSecond",
         "gpuUtilization"
        ],
        "type": "string"
       },
       "minReplicas": {
        "default": 1,
        "description": "Fewest replicas (per model, across regions); 0 only with mode keda or none.",
        "maximum": 1000,
        "minimum": 0,
        "type": "integer"
       },
       "mode": {
        "default": "operator",
        "description": "Who scales: operator (the operator, from Triton metrics), hpa (an autoscaling/v2 HorizontalPodAutoscaler on a per-pod custom metric), keda (a KEDA ScaledObject with a Prometheus trigger) or none (a fixed minReplicas).",
        "enum": [
         "operator",
         "hpa",
         "keda",
         "none"
        ],
        "type": "string"
       },
       "scaleDownStabilizationSeconds": {
        "default": 120,
        "description": "Look-back window before scaling down; the highest recommendation in it wins.",
        "maximum": 3600,
        "minimum": 0,
        "type": "integer"
       },
       "scaleUpStabilizationSeconds": {
        "default": 0,
        "description": "Look-back window before scaling up; the lowest recommendation in it wins, so a brief spike does not add replicas.",
        "maximum": 3600,
        "minimum": 0,
        "type": "integer"
       },
       "target": {
        "default": 50,
        "description": "The metric's target value, in the metric's unit.",
        "exclusiveMinimum": true,
        "maximum": 1000000,
        "minimum": 0,
        "type": "number"
       },
       "tolerance": {
        "default": 0.1,
        "description": "Relative deviation from target that causes no change (0.1 = 10%).",
        "maximum": 0.9,
        "minimum": 0,
        "type": "number"
       }
      },
      "type": "object",
      "x-kubernetes-validations": [
       {
        "fieldPath": ".minReplicas",
        "message": "minReplicas must not exceed maxReplicas",
        "reason": "FieldValueInvalid",
        "rule": "self.minReplicas <= self.maxReplicas"
       },
       {
        "fieldPath": ".minReplicas",
        "message": "minReplicas 0 (scale to zero) needs mode keda or none: the operator and an HPA read metrics from a running replica",
        "reason": "FieldValueInvalid",
        "rule": "self.minReplicas > 0 || self.mode == 'keda' || self.mode == 'none'"
       },
       {
        "fieldPath": ".target",
        "message": "target is a percentage for metric gpuUtilization and must be at most 100",
        "reason": "FieldValueInvalid",
        "rule": "self.metric != 'gpuUtilization' || self.target <= 100.0"
       },
       {
        "fieldPath": ".carbonCap.maxReplicas",
        "message": "carbonCap.maxReplicas must lie within [minReplicas, maxReplicas]",
        "reason": "FieldValueInvalid",
        "rule": "!has(self.carbonCap) || (self.carbonCap.maxReplicas >= self.minReplicas && self.carbonCap.maxReplicas <= self.maxReplicas)"
       },
       {
        "fieldPath": ".carbonCap",
        "message": "carbonCap needs a scaling mode: mode none keeps a fixed replica count",
        "reason": "FieldValueForbidden",
        "rule": "!has(self.carbonCap) || self.mode != 'none'"
       }
      ]
     },
     "serving": {
      "description": "How the model is served: alone on its own Triton servers (the default), or loaded into a shared server of a ServingPool of the same namespace, which is cheaper for small models.",
      "properties": {
       "pool": {
        "description": "The ServingPool (same namespace) whose Triton servers load this model. The pool's servers, not this model's scaling and placement, then decide where and how many; unset serves the model on dedicated servers.",
        "maxLength": 40,
        "minLength": 1,
        "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$",
        "type": "string"
       }
      },
      "type": "object"
     },
     "triton": {
      "default": {},
      "description": "How Triton serves the model (rendered into its config.pbtxt).",
      "properties": {
       "dynamicBatching": {
        "description": "Triton's dynamic batcher. Without this field batching is on with the defaults below whenever maxBatchSize > 0.",
        "properties": {
         "enabled": {
          "default": true,
          "description": "Turn the dynamic batcher on or off.",
          "type": "boolean"
         },
         "maxQueueDelayMicroseconds": {
          "default": 0,
          "description": "How long a request may wait for others to join its batch. The default 0 never delays a request: the batcher forms batches from the requests that queued while the model was busy, so batching costs nothing at low load and still fills batches under load.",
          "maximum": 10000000,
          "minimum": 0,
          "type": "integer"
         },
         "preferredBatchSizes": {
          "description": "Batch sizes the batcher should prefer to form; each at most maxBatchSize.",
          "items": {
           "maximum": 4096,
           "minimum": 1,
           "type": "integer"
          },
          "maxItems": 16,
          "type": "array",
          "x-kubernetes-list-type": "set"
         }
        },
        "type": "object"
       },
       "image": {
        "description": "The Triton image for this model; the operator's default when unset.",
        "maxLength": 512,
        "minLength": 1,
        "type": "string"
       },
       "inputs": {
        "description": "The model's input tensors. Optional for backends that report them (onnx, tensorrt); pipelines check their tensor wiring against them.",
        "items": {
         "description": "One tensor.",
         "properties": {
          "datatype": {
           "description": "The tensor's Triton data type.",
           "enum": [
            "BOOL",
            "UINT8",
            "UINT16",
            "UINT32",
            "UINT64",
            "INT8",
            "INT16",
            "INT32",
            "INT64",
            "FP16",
            "FP32",
            "FP64",
            "BF16",
            "BYTES"
           ],
           "type": "string"
          },
          "dims": {
           "description": "The tensor's shape without the batch dimension; -1 marks a variable dimension.",
           "items": {
            "format": "int64",
            "maximum": 1048576,
            "minimum": -1,
            "type": "integer"
           },
           "maxItems": 8,
           "minItems": 1,
           "type": "array",
           "x-kubernetes-list-type": "atomic",
           "x-kubernetes-validations": [
            {
             "message": "dims must be positive, or -1 for a variable dimension",
             "rule": "self.all(d, d == -1 || d > 0)"
            }
           ]
          },
          "name": {
           "description": "The tensor's name as the model knows it.",
           "maxLength": 128,
           "minLength": 1,
           "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.:/-]*$",
           "type": "string"
          }
         },
         "required": [
          "name",
          "datatype",
          "dims"
         ],
         "type": "object"
        },
        "maxItems": 32,
        "type": "array",
        "x-kubernetes-list-map-keys": [
         "name"
        ],
        "x-kubernetes-list-type": "map"
       },
       "instanceCount": {
        "default": 1,
        "description": "Model instances per Triton server (instance_group count).",
        "maximum": 64,
        "minimum": 1,
        "type": "integer"
       },
       "maxBatchSize": {
        "default": 8,
        "description": "The largest batch Triton may form (max_batch_size). 0 means the model does not batch and its tensor dims include every dimension.",
        "maximum": 4096,
        "minimum": 0,
        "type": "integer"
       },
       "outputs": {
        "description": "The model's output tensors, as for inputs.",
        "items": {
         "description": "One tensor.",
         "properties": {
          "datatype": {
           "description": "The tensor's Triton data type.",
           "enum": [
            "BOOL",
            "UINT8",
            "UINT16",
            "UINT32",
            "UINT64",
            "INT8",
            "INT16",
            "INT32",
            "INT64",
            "FP16",
            "FP32",
            "FP64",
            "BF16",
            "BYTES"
           ],
           "type": "string"
          },
          "dims": {
           "description": "The tensor's shape without the batch dimension; -1 marks a variable dimension.",
           "items": {
            "format": "int64",
            "maximum": 1048576,
            "minimum": -1,
            "type": "integer"
           },
           "maxItems": 8,
           "minItems": 1,
           "type": "array",
           "x-kubernetes-list-type": "atomic",
           "x-kubernetes-validations": [
            {
             "message": "dims must be positive, or -1 for a variable dimension",
             "rule": "self.all(d, d == -1 || d > 0)"
            }
           ]
          },
          "name": {
           "description": "The tensor's name as the model knows it.",
           "maxLength": 128,
           "minLength": 1,
           "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.:/-]*$",
           "type": "string"
          }
         },
         "required": [
          "name",
          "datatype",
          "dims"
         ],
         "type": "object"
        },
        "maxItems": 32,
        "type": "array",
        "x-kubernetes-list-map-keys": [
         "name"
        ],
        "x-kubernetes-list-type": "map"
       },
       "parameters": {
        "additionalProperties": {
         "maxLength": 1024,
         "type": "string"
        },
        "description": "Model parameters for config.pbtxt (for example EXECUTION_ENV_PATH for the python backend); keys are identifiers.",
        "maxProperties": 32,
        "type": "object",
        "x-kubernetes-validations": [
         {
          "message": "parameter keys must be identifiers of at most 128 characters (letters, digits, '_')",
          "rule": "self.all(k, k.matches('^[A-Za-z_][A-Za-z0-9_]{0,127}$'))"
         }
        ]
       }
      },
      "type": "object",
      "x-kubernetes-validations": [
       {
        "fieldPath": ".dynamicBatching",
        "message": "dynamicBatching needs maxBatchSize > 0: a model that cannot batch cannot be batched dynamically (set enabled: false or raise maxBatchSize)",
        "reason": "FieldValueForbidden",
        "rule": "!has(self.dynamicBatching) || !self.dynamicBatching.enabled || self.maxBatchSize > 0"
       },
       {
        "fieldPath": ".dynamicBatching.preferredBatchSizes",
        "message": "every preferredBatchSizes entry must be at most maxBatchSize",
        "reason": "FieldValueInvalid",
        "rule": "!has(self.dynamicBatching) || !has(self.dynamicBatching.preferredBatchSizes) || self.dynamicBatching.preferredBatchSizes.all(b, b <= self.maxBatchSize)"
       }
      ]
     }
    },
    "required": [
     "model",
     "card"
    ],
    "type": "object",
    "x-kubernetes-validations": [
     {
      "fieldPath": ".scaling.metric",
      "message": "scaling.metric gpuUtilization needs resources.gpus > 0: a CPU model has no GPU to measure",
      "reason": "FieldValueInvalid",
      "rule": "self.scaling.metric != 'gpuUtilization' || self.resources.gpus > 0"
     },
     {
      "fieldPath": ".model.format",
      "message": "model.format tensorrt needs resources.gpus > 0: a TensorRT plan runs only on a GPU",
      "reason": "FieldValueInvalid",
      "rule": "self.model.format != 'tensorrt' || self.resources.gpus > 0"
     },
     {
      "fieldPath": ".model.credentials",
      "message": "model.credentials is not available with serving.pool: a pool server's fetch agent is shared by the models of every owner in the pool, so it would hold each one's credentials; serve a private artifact on its own server",
      "reason": "FieldValueForbidden",
      "rule": "!has(self.model.credentials) || !has(self.serving) || !has(self.serving.pool)"
     },
     {
      "fieldPath": ".expose",
      "message": "expose is not available with serving.pool: a pooled model has no Service of its own to route to",
      "reason": "FieldValueForbidden",
      "rule": "!has(self.expose) || !has(self.serving) || !has(self.serving.pool)"
     }
    ]
   },
   "status": {
    "default": {
     "observedGeneration": 0
    },
    "description": "The observed state, written by the operator only.",
    "properties": {
     "artifact": {
      "description": "The artifact the replicas serve.",
      "properties": {
       "digest": {
        "description": "Its digest.",
        "maxLength": 71,
        "type": "string"
       },
       "verified": {
        "description": "True once an init container verified the digest.",
        "type": "boolean"
       }
      },
      "type": "object"
     },
     "carbon": {
      "description": "The carbon signal of the serving region(s) and the estimated emissions.",
      "properties": {
       "energyWatts": {
        "description": "Estimated power draw of the serving replicas, including the data-centre PUE.",
        "type": "number"
       },
       "gramsCO2ePerHour": {
        "description": "Estimated emissions, energyWatts \u00d7 intensity.",
        "type": "number"
       },
       "intensity": {
        "description": "Grid carbon intensity (gCO2eq/kWh) of the serving region, replica-weighted across regions.",
        "type": "number"
       },
       "observedAt": {
        "description": "When the provider measured or forecast the signal.",
        "format": "date-time",
        "type": "string"
       },
       "provider": {
        "description": "Where the signal came from (static, electricitymaps, watttime, ukgrid, carbonawaresdk).",
        "maxLength": 64,
        "type": "string"
       },
       "signalKind": {
        "description": "average or marginal intensity.",
        "maxLength": 32,
        "type": "string"
       },
       "stale": {
        "description": "True when the signal is older than the operator's maximum age.",
        "type": "boolean"
       }
      },
      "type": "object"
     },
     "conditions": {
      "description": "Ready, Reconciling, Stalled and specific conditions (Placed, ArtifactVerified, CarbonSignalStale, ScalingActive, Exposed), in the shape of metav1.Condition.",
      "items": {
       "description": "One condition.",
       "properties": {
        "lastTransitionTime": {
         "description": "When the status last changed.",
         "format": "date-time",
         "type": "string"
        },
        "message": {
         "description": "Why, for a person.",
         "maxLength": 32768,
         "type": "string"
        },
        "observedGeneration": {
         "description": "The metadata.generation the condition was set from.",
         "format": "int64",
         "minimum": 0,
         "type": "integer"
        },
        "reason": {
         "description": "Why, in one CamelCase word.",
         "maxLength": 1024,
         "minLength": 1,
         "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
         "type": "string"
        },
        "status": {
         "description": "True, False or Unknown.",
         "enum": [
          "True",
          "False",
          "Unknown"
         ],
         "type": "string"
        },
        "type": {
         "description": "The condition's type, in CamelCase.",
         "maxLength": 316,
         "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
         "type": "string"
        }
       },
       "required": [
        "type",
        "status",
        "lastTransitionTime",
        "reason",
        "message"
       ],
       "type": "object"
      },
      "maxItems": 16,
      "type": "array",
      "x-kubernetes-list-map-keys": [
       "type"
      ],
      "x-kubernetes-list-type": "map"
     },
     "desiredReplicas": {
      "description": "Triton replicas the operator wants, across regions.",
      "minimum": 0,
      "type": "integer"
     },
     "endpoint": {
      "description": "Deprecated: use url and grpcAddress. The DNS name of the Service in front of the Triton servers (a pooled model: its pool server's).",
      "maxLength": 253,
      "type": "string"
     },
     "grpcAddress": {
      "description": "The host:port of Triton's gRPC API inside the cluster (service inference.GRPCInferenceService).",
      "maxLength": 512,
      "type": "string"
     },
     "observedGeneration": {
      "description": "The metadata.generation this status describes.",
      "format": "int64",
      "minimum": 0,
      "type": "integer"
     },
     "placement": {
      "description": "The placement decision.",
      "properties": {
       "excluded": {
        "description": "Regions that were not feasible, and why.",
        "items": {
         "description": "One excluded region.",
         "properties": {
          "message": {
           "description": "Why, for a person.",
           "maxLength": 1024,
           "type": "string"
          },
          "reason": {
           "description": "Why, in one CamelCase word (NotAllowed, Residency, NoCapacity, AboveMaxIntensity, NoSignal).",
           "maxLength": 64,
           "type": "string"
          },
          "region": {
           "description": "The region.",
           "maxLength": 63,
           "type": "string"
          }
         },
         "type": "object"
        },
        "maxItems": 64,
        "type": "array"
       },
       "lastMoveTime": {
        "description": "When the model last moved region.",
        "format": "date-time",
        "type": "string"
       },
       "regions": {
        "description": "The chosen regions.",
        "items": {
         "description": "One chosen region.",
         "properties": {
          "intensity": {
           "description": "Its carbon intensity (gCO2eq/kWh) at decision time.",
           "type": "number"
          },
          "region": {
           "description": "The region.",
           "maxLength": 63,
           "type": "string"
          },
          "replicas": {
           "description": "Replicas placed there.",
           "minimum": 0,
           "type": "integer"
          }
         },
         "type": "object"
        },
        "maxItems": 32,
        "type": "array"
       }
      },
      "type": "object"
     },
     "pool": {
      "description": "Where a pooled model is loaded, as the pool's Triton servers report it.",
      "properties": {
       "name": {
        "description": "The ServingPool.",
        "maxLength": 40,
        "type": "string"
       },
       "server": {
        "description": "The pool server (pod) that holds the model; empty while it waits for room.",
        "maxLength": 253,
        "type": "string"
       },
       "state": {
        "description": "The model's state in that server's Triton (READY, LOADING, UNAVAILABLE) or why it waits.",
        "maxLength": 64,
        "type": "string"
       }
      },
      "type": "object"
     },
     "readyReplicas": {
      "description": "Triton replicas that are ready, across regions.",
      "minimum": 0,
      "type": "integer"
     },
     "region": {
      "description": "The regions currently serving, comma-joined (for the printer column).",
      "maxLength": 1024,
      "type": "string"
     },
     "regions": {
      "description": "The regions currently serving.",
      "items": {
       "maxLength": 63,
       "type": "string"
      },
      "maxItems": 32,
      "type": "array"
     },
     "replicas": {
      "description": "Triton replicas that exist, across regions.",
      "minimum": 0,
      "type": "integer"
     },
     "scaling": {
      "description": "The scaling state.",
      "properties": {
       "currentReplicas": {
        "description": "Replicas that exist.",
        "minimum": 0,
        "type": "integer"
       },
       "desiredReplicas": {
        "description": "Replicas the scaler wants.",
        "minimum": 0,
        "type": "integer"
       },
       "effectiveMaxReplicas": {
        "description": "maxReplicas after the carbon cap.",
        "minimum": 0,
        "type": "integer"
       },
       "lastDecision": {
        "description": "The scaler's last decision.",
        "properties": {
         "metric": {
          "description": "The metric it read.",
          "maxLength": 64,
          "type": "string"
         },
         "reason": {
          "description": "Why the replica count is what it is.",
          "maxLength": 1024,
          "type": "string"
         },
         "target": {
          "description": "The metric's target.",
          "type": "number"
         },
         "time": {
          "description": "When it was taken.",
          "format": "date-time",
          "type": "string"
         },
         "value": {
          "description": "The metric's value.",
          "type": "number"
         }
        },
        "type": "object"
       },
       "mode": {
        "description": "The scaling mode in force.",
        "maxLength": 16,
        "type": "string"
       },
       "pendingReplicas": {
        "description": "Replicas the scheduler cannot place yet (no room on a node that fits, such as no free GPU in the region).",
        "minimum": 0,
        "type": "integer"
       },
       "readyReplicas": {
        "description": "Replicas that are ready.",
        "minimum": 0,
        "type": "integer"
       }
      },
      "type": "object"
     },
     "url": {
      "description": "The base URL of Triton's HTTP API inside the cluster, as http://<service>.<namespace>.svc:8000 (a pooled model: its pool server's). Inference is POST <url>/v2/models/<name>/infer.",
      "maxLength": 2048,
      "type": "string"
     }
    },
    "type": "object"
   }
  },
  "required": [
   "spec"
  ],
  "type": "object",
  "x-kubernetes-validations": [
   {
    "message": "metadata.name must be a DNS-1035 label of at most 40 characters (lower case letters, digits and '-', starting with a letter): it names the model in Triton and the model's Service and Deployments",
    "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 40"
   }
  ]
 }
}"""

SCHEMAS: Final[dict[str, dict[str, Any]]] = json.loads(_JSON)

-- Argo CD health check for smallfleet resources (serving.smallfleet.io/v1alpha1).
--
-- The same script serves SmallModel and ModelPipeline: both carry the status that
-- kstatus reads (observedGeneration; Ready, Reconciling, Stalled conditions), and
-- the verdict follows kstatus step by step so that Argo CD and Flux agree on the
-- same live object:
--   being deleted                          -> Progressing (kstatus: Terminating)
--   observedGeneration ~= generation       -> Progressing (kstatus: InProgress)
--   first Reconciling=True or Stalled=True -> Progressing / Degraded (InProgress / Failed)
--   Ready=True                             -> Healthy     (Current)
--   Ready=False or Unknown                 -> Progressing (InProgress)
-- Where kstatus has nothing to read (no status, or no Ready condition yet) it
-- assumes Current; smallfleet always writes Ready once it has seen an object, so
-- here the absence means "not reconciled yet" and the answer is Progressing.
hs = {}

-- Argo CD shows one line: the condition's message, else its reason.
local function describe(cond, fallback)
  if cond.message ~= nil and cond.message ~= "" then
    return cond.message
  end
  if cond.reason ~= nil and cond.reason ~= "" then
    return cond.reason
  end
  return fallback
end

local meta = obj.metadata or {}
if meta.deletionTimestamp ~= nil and meta.deletionTimestamp ~= "" then
  hs.status = "Progressing"
  hs.message = "Being deleted"
  return hs
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe the object"
  return hs
end

if meta.generation ~= nil and status.observedGeneration ~= nil
    and status.observedGeneration ~= meta.generation then
  hs.status = "Progressing"
  hs.message = "Generation " .. tostring(meta.generation)
    .. " not yet observed (observed " .. tostring(status.observedGeneration) .. ")"
  return hs
end

local conditions = status.conditions or {}
-- kstatus takes the first of Reconciling=True and Stalled=True in list order.
for _, cond in ipairs(conditions) do
  if cond.type == "Reconciling" and cond.status == "True" then
    hs.status = "Progressing"
    hs.message = describe(cond, "Reconciling")
    return hs
  end
  if cond.type == "Stalled" and cond.status == "True" then
    hs.status = "Degraded"
    hs.message = describe(cond, "Stalled")
    return hs
  end
end

for _, cond in ipairs(conditions) do
  if cond.type == "Ready" then
    if cond.status == "True" then
      hs.status = "Healthy"
      hs.message = describe(cond, "Ready")
    else
      hs.status = "Progressing"
      hs.message = describe(cond, "Not ready")
    end
    return hs
  end
end

hs.status = "Progressing"
hs.message = "Waiting for the Ready condition"
return hs

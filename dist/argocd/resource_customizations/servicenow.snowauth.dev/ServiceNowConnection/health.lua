-- Health of a snowauth ServiceNowConnection (servicenow.snowauth.dev).
--
-- Uses only the libraries Argo CD opens for scripts from argocd-cm (base and
-- table), so it works without resource.customizations.useOpenLibs. Messages
-- are the connection's own condition messages.
local hs = {}

local function condition(conditions, type)
  for _, c in ipairs(conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function isTrue(c)
  return c ~= nil and c.status == "True"
end

local function messageOf(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

-- spec.suspend: snowauth stops refreshing and says so in Ready.
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "refreshing is suspended (spec.suspend is true)"
  if obj.status ~= nil and obj.status.conditions ~= nil then
    local ready = condition(obj.status.conditions, "Ready")
    if ready ~= nil and ready.reason == "Suspended" then
      hs.message = messageOf(ready, hs.message)
    end
  end
  return hs
end

if obj.status == nil or obj.status.conditions == nil or #obj.status.conditions == 0 then
  hs.status = "Progressing"
  hs.message = "waiting for snowauth to report on the connection"
  return hs
end

-- A status from before the latest spec change says nothing about this one.
-- (snowauth writes -1 until it has looked at the connection.)
local generation = tonumber(obj.metadata.generation)
local observed = tonumber(obj.status.observedGeneration)
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "waiting for snowauth to handle generation " .. tostring(generation) ..
    " (it last handled " .. tostring(observed) .. ")"
  return hs
end

local conditions = obj.status.conditions
local ready = condition(conditions, "Ready")
local stalled = condition(conditions, "Stalled")
local reconciling = condition(conditions, "Reconciling")
local refreshFailed = condition(conditions, "RefreshFailed")

if ready == nil then
  hs.status = "Progressing"
  hs.message = "waiting for snowauth to report the Ready condition"
  return hs
end

-- AuthorizationCode grant before anyone has authorised: nothing is broken,
-- a person has yet to log in. Progressing keeps a sync wave waiting for the
-- first token instead of failing the sync.
if ready.status ~= "True" and ready.reason == "AuthorizationRequired" then
  hs.status = "Progressing"
  hs.message = messageOf(ready,
    "waiting for a person to authorise snowauth: kubectl servicenow authorize " .. tostring(obj.metadata.name))
  return hs
end

-- A person must act (credentials, instance, Secret conflict, a rejected
-- refresh token): snowauth will not recover by itself.
if isTrue(stalled) then
  hs.status = "Degraded"
  hs.message = messageOf(stalled, messageOf(ready, stalled.reason))
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = messageOf(ready, "the token Secret holds a valid token")
  if isTrue(refreshFailed) then
    hs.message = hs.message .. "; refreshing is failing (" .. tostring(refreshFailed.reason) .. "): " ..
      messageOf(refreshFailed, "see the RefreshFailed condition")
  end
  local expiring = condition(conditions, "RefreshTokenExpiring")
  if not isTrue(expiring) then
    -- The same refresh token's end, when both are true: say it once.
    expiring = condition(conditions, "CredentialExpiring")
  end
  if isTrue(expiring) then
    hs.message = hs.message .. "; " .. messageOf(expiring, "a credential expires soon")
  end
  -- spec.probe: the token works but a path the application needs refused
  -- it. Healthy still (the token is fine; the instance's scopes, roles or
  -- ACLs are not), and the message says so.
  local authorized = condition(conditions, "Authorized")
  if authorized ~= nil and authorized.status == "False" then
    hs.message = hs.message .. "; the authorization probe failed (" .. tostring(authorized.reason) .. "): " ..
      messageOf(authorized, "see the Authorized condition")
  end
  return hs
end

-- The first token is still being requested.
if ready.status == "False" and ready.reason == "Progressing" and isTrue(reconciling) then
  hs.status = "Progressing"
  hs.message = messageOf(reconciling, messageOf(ready, "requesting a first token"))
  return hs
end

if ready.status == "False" then
  hs.status = "Degraded"
  hs.message = messageOf(ready, tostring(ready.reason))
  return hs
end

hs.status = "Progressing"
hs.message = messageOf(ready, "waiting for snowauth")
return hs

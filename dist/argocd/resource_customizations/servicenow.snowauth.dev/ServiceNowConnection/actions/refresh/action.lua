-- Same as `kubectl servicenow refresh`: any new value of the annotation asks
-- snowauth for one immediate token request, even during a retry backoff.
-- Argo CD's sandbox has no global os: require the safe os module.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["servicenow.snowauth.dev/refresh-requested-at"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj

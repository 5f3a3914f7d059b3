-- refresh asks snowauth for a new token now. snowauth ignores the request
-- while spec.suspend is true, so the action is offered disabled then.
local actions = {}
local suspended = obj.spec ~= nil and obj.spec.suspend == true
actions["refresh"] = {["disabled"] = suspended}
return actions

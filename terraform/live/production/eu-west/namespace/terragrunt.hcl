# All of this unit is in live/_envcommon/namespace.hcl, the same for every env and region (it reads the env.hcl
# and region.hcl above this folder). Add here only what differs in this env or region: inputs set here override
# the common ones key by key, and a dependency block here replaces the common one of the same name.

include "root" {
  path = find_in_parent_folders("root.hcl")
}

include "envcommon" {
  path   = "${dirname(find_in_parent_folders("root.hcl"))}/_envcommon/namespace.hcl"
  expose = true
}

// Package testutil holds helpers shared by the module's tests.
//
// It is for tests only: production code must not import it.
package testutil
